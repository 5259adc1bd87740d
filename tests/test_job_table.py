"""The shared job table (DynamoDB on moto's server, over HTTP) between real workers: a job runs
once across boxes, a lapsed lease is taken over with the next fence and the stale attempt
publishes nothing, cancel reaches the box running the job, and a table down costs only the
cross-box guarantee."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest

from testkit.moto_server import MotoServer, create_job_table, free_port
from testkit.tcp_proxy import TcpProxy
from testkit.waiting import wait_until
from tests.support import REPO, SUPERVISOR, Worker, health, job, new_queue, queue_is_empty

VISIBILITY_S = 3  # a claim's lease: twice that, renewed every half of it


@pytest.fixture
def dynamodb(moto: MotoServer) -> Any:
    return boto3.client("dynamodb")


@pytest.fixture
def table(dynamodb: Any) -> str:
    """A new job table, as docs/guarantees.md defines it."""
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    create_job_table(name)
    return name


@pytest.fixture
def pair(tmp_path: Path, sqs: Any, table: str) -> Any:
    """Makes workers `a`, `b`, ... on one SQS jobs queue, one results queue and the table."""
    jobs, results = new_queue(sqs, "jobs"), new_queue(sqs, "results")
    made: list[Worker] = []

    def make(name: str, environment: dict[str, str] | None = None, options: list[str] | None = None) -> Worker:
        directory = tmp_path / name
        directory.mkdir()
        worker_options = ["--job-table", table, "--visibility-timeout", str(VISIBILITY_S), *(options or [])]
        worker = Worker(directory, queue=jobs, result_queue=results, options=worker_options, environment=environment)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


def recorded_job(job_id: str, runs: Path, started: Path, sleep_s: float) -> dict[str, Any]:
    arguments: list[dict[str, Any]] = [
        {"type": "parameter", "name": "--record-run", "value": str(runs)},
        {"type": "parameter", "name": "--started", "value": str(started)},
        {"type": "parameter", "name": "--sleep", "value": sleep_s},
    ]
    return job(arguments, id=job_id)


def run_count(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def item(table: str, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=table, Key={"job_id": {"S": job_id}}, ConsistentRead=True
    )
    return {name: next(iter(value.values())) for name, value in found.get("Item", {}).items()}


def unhealthy(port: int) -> dict[str, Any] | None:
    """/healthz's body once it says the worker is unhealthy."""
    status, body = health(port)
    return body if status == 503 else None


def finals(worker: Worker, message_id: str) -> list[dict[str, Any]]:
    return [result for result in worker.results_for(message_id) if result["final"]]


def signal_tree(worker: Worker, signum: signal.Signals) -> None:
    """The supervisor, its children and their jobs: the whole box frozen, or thawed."""
    assert worker.process is not None
    supervisor = psutil.Process(worker.process.pid)
    for process in [supervisor, *supervisor.children(recursive=True)]:
        process.send_signal(signum)


def test_a_box_cut_off_from_sqs_keeps_its_job_and_the_other_box_never_runs_it(
    pair: Any, moto: MotoServer, sqs: Any, table: str, tmp_path: Path
) -> None:
    proxy = TcpProxy(moto.port)  # box a's SQS traffic only; its table calls go straight to moto
    try:
        a = pair("a", environment={"AWS_ENDPOINT_URL_SQS": proxy.endpoint}).start()
        runs, started = tmp_path / "runs", tmp_path / "started"
        message_id = a.submit(recorded_job("job-once", runs, started, sleep_s=4 * VISIBILITY_S))
        wait_until(started.exists, 30, "the job to start on box a")
        proxy.stop()
        b = pair("b").start()
        held = b.wait_for_log("job claimed by another worker; not run here", timeout=30)
        a.wait_for_log("job finished", timeout=60)
        proxy.start()
        result = a.result(message_id, timeout=60)
        # Deleted by a with its old receipt, or by b once a delivery found the job finished.
        wait_until(lambda: queue_is_empty(sqs, a.queue_spec), 60, "the jobs queue to be empty")
        assert not b.log_records_with("job started")

        assert result["status"] == "succeeded", result
        assert run_count(runs) == 1
        assert held[0]["owner"].split("/")[2] == str(a.process.pid)
        assert len(finals(a, message_id)) == 1
        assert (item(table, "job-once")["state"], item(table, "job-once")["fence"]) == (
            "finished", "1")  # fmt: skip
    finally:
        proxy.stop()


def test_a_lapsed_lease_is_taken_over_and_the_stale_attempt_publishes_nothing(
    pair: Any, table: str, tmp_path: Path
) -> None:
    a = pair("a", options=["--kill-grace", "1"]).start()
    runs, started = tmp_path / "runs", tmp_path / "started"
    message_id = a.submit(recorded_job("job-taken-over", runs, started, sleep_s=3 * VISIBILITY_S))
    wait_until(started.exists, 30, "the job to start on box a")
    signal_tree(a, signal.SIGSTOP)  # box a cut off: no heartbeat, no lease renewal
    try:
        b = pair("b").start()
        b.wait_for_log("job finished", timeout=60)
    finally:
        signal_tree(a, signal.SIGCONT)
    result = a.result(message_id, timeout=30)  # the results queue is shared: b's result
    a.wait_for_log("the job's claim went to another worker while it ran here: nothing of it is published", 60)

    assert result["status"] == "succeeded" and result["worker"]["pid"] == b.process.pid
    assert item(table, "job-taken-over")["fence"] == "2"
    assert run_count(runs) == 2  # a's attempt ran until it learnt it was stale
    assert len(finals(a, message_id)) == 1
    assert a.leftovers() == []


def test_cancel_through_the_table_stops_the_job_on_the_box_running_it(pair: Any, table: str, tmp_path: Path) -> None:
    options = ["--cancel-poll", "0.5", "--kill-grace", "1"]
    a, b = pair("a", options=options).start(), pair("b", options=options).start()
    started = tmp_path / "started"
    message_id = a.submit(recorded_job("job-canceled", tmp_path / "runs", started, sleep_s=300))
    wait_until(started.exists, 30, "the job to start")

    command = [sys.executable, str(SUPERVISOR), "--job-table", table, "--log-format", "json"]
    command += ["cancel", "job-canceled", "--reason", "wrong inputs", "--wait", "--timeout", "30"]
    asked = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    result = a.result(message_id)

    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert result["status"] == "canceled" and result["error"]["message"].endswith("wrong inputs"), result
    runner = a if a.log_records_with("job canceled; stopping it") else b
    assert runner.log_records_with("job canceled; stopping it")
    assert item(table, "job-canceled")["status"] == "canceled"
    again = subprocess.run(command[:-5], capture_output=True, text=True, cwd=REPO, check=False)
    assert again.returncode == 5 and "already finished: canceled" in again.stdout


def test_with_the_table_down_jobs_still_run_once_and_health_says_so(
    pair: Any, moto: MotoServer, table: str, tmp_path: Path
) -> None:
    proxy = TcpProxy(moto.port)
    port = free_port()
    try:
        environment = {"AWS_ENDPOINT_URL_DYNAMODB": proxy.endpoint}
        a = pair("a", environment=environment, options=["--metrics-port", str(port)]).start()
        proxy.stop()
        first = a.submit(recorded_job("job-untabled", tmp_path / "runs-1", tmp_path / "started-1", 0))
        assert a.result(first)["status"] == "succeeded"
        body = wait_until(lambda: unhealthy(port), 30, "/healthz to say so")
        assert any(f"job table {table} is unreachable" in problem for problem in body["problems"]), body
        assert item(table, "job-untabled") == {}

        proxy.start()
        second = a.submit(recorded_job("job-tabled", tmp_path / "runs-2", tmp_path / "started-2", 0))
        assert a.result(second)["status"] == "succeeded"
        wait_until(lambda: health(port)[0] == 200, 30, "the worker to be healthy again")
        assert item(table, "job-tabled")["state"] == "finished"
        assert run_count(tmp_path / "runs-1") == run_count(tmp_path / "runs-2") == 1
    finally:
        proxy.stop()


def test_a_missing_or_misshapen_table_stops_the_worker_at_start(
    moto: MotoServer, dynamodb: Any, sqs: Any, tmp_path: Path
) -> None:
    misshapen = f"jobs-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=misshapen,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    queue = new_queue(sqs, "jobs")
    for name, expected in (("no-such-table", "no-such-table"), (misshapen, "partition key 'job_id'")):
        command = [sys.executable, str(SUPERVISOR), "--queue", queue, "--job-table", name,
                   "--scratch-dir", str(tmp_path / name), "--journal", str(tmp_path / f"{name}.sqlite3"),
                   "native", "--", "true"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr


def test_a_job_finished_by_a_box_that_died_is_answered_from_the_table_by_the_next(
    pair: Any, moto: MotoServer, sqs: Any, table: str, tmp_path: Path
) -> None:
    proxy = TcpProxy(moto.port)  # box a's SQS traffic only
    try:
        a = pair("a", environment={"AWS_ENDPOINT_URL_SQS": proxy.endpoint}).start()
        runs, started = tmp_path / "runs", tmp_path / "started"
        message_id = a.submit(recorded_job("job-answered", runs, started, sleep_s=2))
        wait_until(started.exists, 30, "the job to start on box a")
        proxy.stop()  # a loses SQS before the job ends: its result and delete cannot go out
        wait_until(lambda: item(table, "job-answered").get("state") == "finished", 30, "the job finished in the table")
        signal_tree(a, signal.SIGKILL)  # and dies
        b = pair("b").start()
        result = b.result(message_id, timeout=60)
        wait_until(lambda: queue_is_empty(sqs, b.queue_spec), 60, "the jobs queue to be empty")
    finally:
        proxy.stop()
    assert (result["status"], result["attempt"], result["worker"]["pid"]) == ("succeeded", 1, a.process.pid)
    assert run_count(runs) == 1 and not b.log_records_with("job started")
    (answered,) = b.log_records_with("duplicate delivery of a finished job")
    assert answered["result_sent_again"] is True
    assert len(finals(b, message_id)) == 1


def test_a_large_result_is_kept_in_s3_and_a_duplicate_delivery_gets_it_whole(
    pair: Any, table: str, bucket: str
) -> None:
    a = pair("a", options=["--large-payload-bucket", bucket]).start()
    a.results.large_payload_bucket = bucket  # results over SQS's limit travel through S3 too
    size = 1_000_000
    request = job([{"type": "parameter", "name": "--print-bytes", "value": size}], id="job-large")
    first = a.result(a.submit(request), timeout=60)
    assert first["status"] == "succeeded" and len(first["stdout"]) == size
    stored = item(table, "job-large")
    assert "result" not in stored and stored["result_bucket"] == bucket and int(stored["result_bytes"]) > size

    a.submit(request)  # the same job again, in a message of its own: answered from the table
    wait_until(lambda: len(finals(a, first["message_id"])) == 2, 60, "the stored result sent again")
    again = finals(a, first["message_id"])[1]
    assert again == first
    assert len(a.log_records_with("job started")) == 1


def test_a_renewal_stalled_past_its_jobs_end_does_not_stop_the_next_job(pair: Any, tmp_path: Path) -> None:
    # The first renewal (after VISIBILITY_S / 2) hangs for 15 s, far past its job's end; the
    # next job runs on the same child meanwhile, and is still running when the renewal answers
    # that the (finished) first job's claim is no longer held.
    a = pair("a", environment={"API_WORKER_TEST_FAULTS": "lease-renewal:1"})
    a.start()
    first_runs, second_runs = tmp_path / "first-runs", tmp_path / "second-runs"
    first = a.submit(recorded_job("job-first", first_runs, tmp_path / "first-started", sleep_s=VISIBILITY_S / 2 + 1))
    second = a.submit(recorded_job("job-second", second_runs, tmp_path / "second-started", sleep_s=14))
    assert a.result(first, timeout=60)["status"] == "succeeded"
    result = a.result(second, timeout=60)

    assert result["status"] == "succeeded", result
    assert run_count(second_runs) == 1
    assert not a.log_records_with("the job's claim went to another worker; stopping it")

"""The journal in a running worker: a finished job is never run again, through SIGKILLs,
queue outages and restarts; bad journals stop the worker; a failing journal loses nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from journal.base import Outcome
from journal.sqlite import FORMAT_VERSION, SqliteJournal
from queues.base import BATCH_MAX
from testkit.moto_server import MotoServer, free_port
from testkit.tcp_proxy import TcpProxy
from testkit.waiting import wait_until
from tests.support import Worker, health, job, metrics, queue_is_empty

WorkerFactory = Callable[..., Worker]


def recorded_job(runs: Path, sleep_s: float = 0.0, started: Path | None = None, **fields: Any) -> dict[str, Any]:
    """A job that appends a line to `runs` each time it runs."""
    arguments: list[dict[str, Any]] = [
        {"type": "parameter", "name": "--record-run", "value": str(runs)},
        {"type": "parameter", "name": "--sleep", "value": sleep_s},
    ]
    if started is not None:
        arguments.append({"type": "parameter", "name": "--started", "value": str(started)})
    return job(arguments, **fields)


def run_count(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def finals(worker: Worker, message_id: str) -> list[dict[str, Any]]:
    return [result for result in worker.results_for(message_id) if result["final"]]


def kill_supervisor(worker: Worker) -> None:
    """SIGKILL the supervisor alone; its children follow by their parent-death signal."""
    assert worker.process is not None
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(10)


def test_sigkilled_supervisor_never_repeats_a_finished_job(sqs_worker: Any, sqs: Any, tmp_path: Path) -> None:
    jobs, slots, kills = 200, 4, 5
    worker = sqs_worker(workers=slots, options=["--visibility-timeout", "5"])
    runs = tmp_path / "runs"
    runs.mkdir()
    pick = random.Random(7)
    sent = [worker.submit(recorded_job(runs / str(index), pick.uniform(0, 0.3))) for index in range(jobs)]
    finished = 0
    for _ in range(kills):
        worker.start()
        # A random moment: after a random number of further jobs finished in this run.
        finished += pick.randint(5, 30)
        worker.wait_for_log("job finished", timeout=120, count=finished)
        kill_supervisor(worker)
    worker.start()
    results = {message_id: worker.result(message_id, timeout=180) for message_id in sent}
    wait_until(lambda: queue_is_empty(sqs, worker.queue_spec), 60, "the jobs queue to be empty")
    assert all(result["status"] == "succeeded" for result in results.values())
    # One final outcome per job. A result *message* may come twice, identical, when the kill
    # landed during the call that sent it (the worker cannot know that the queue took it).
    outcomes = {m: {(r["attempt"], r["started_at"]) for r in finals(worker, m)} for m in sent}
    assert all(len(kinds) == 1 for kinds in outcomes.values()), {m: k for m, k in outcomes.items() if len(k) != 1}
    copies = sum(len(finals(worker, m)) for m in sent) - jobs
    assert copies <= kills * BATCH_MAX
    total_runs = sum(run_count(runs / str(index)) for index in range(jobs))
    print(f"{jobs} jobs, {kills} kills of the supervisor: {total_runs} runs, {copies} result messages sent twice")
    assert total_runs <= jobs + kills * slots
    assert worker.log_records_with("delivering what the previous run left") or total_runs == jobs


def test_a_queue_outage_longer_than_the_visibility_reruns_nothing(
    sqs_worker: Any, sqs: Any, moto: MotoServer, tmp_path: Path
) -> None:
    visibility = 3
    proxy = TcpProxy(moto.port)
    try:
        worker = sqs_worker(
            workers=4,
            options=["--visibility-timeout", str(visibility)],
            environment={"AWS_ENDPOINT_URL": proxy.endpoint},
        ).start()
        runs = [tmp_path / f"runs-{index}" for index in range(4)]
        starts = [tmp_path / f"started-{index}" for index in range(4)]
        sent = [worker.submit(recorded_job(runs[i], 2, starts[i])) for i in range(4)]
        wait_until(lambda: all(path.exists() for path in starts), 30, "all four jobs to start")
        proxy.stop()
        outage_began = time.monotonic()
        worker.wait_for_log("job finished", timeout=30, count=4)
        # The queue stays unreachable for more than three visibility timeouts.
        wait_until(lambda: time.monotonic() - outage_began > 3.5 * visibility, 30, "the outage to last")
        proxy.start()
        results = {message_id: worker.result(message_id, timeout=120) for message_id in sent}
        wait_until(lambda: queue_is_empty(sqs, worker.queue_spec), 60, "the jobs queue to be empty")
        assert all(result["status"] == "succeeded" for result in results.values())
        assert [run_count(path) for path in runs] == [1, 1, 1, 1]
        assert all(len(finals(worker, message_id)) == 1 for message_id in sent)
        # Each message was either deleted with its old receipt once the queue was back, or came
        # back first and was answered from the journal: either way, not run again.
    finally:
        proxy.stop()


def test_a_result_left_unsent_by_a_killed_worker_goes_out_at_the_next_start(
    sqs_worker: Any, sqs: Any, moto: MotoServer, tmp_path: Path
) -> None:
    proxy = TcpProxy(moto.port)
    try:
        worker = sqs_worker(environment={"AWS_ENDPOINT_URL": proxy.endpoint}).start()
        runs, started = tmp_path / "runs", tmp_path / "started"
        message_id = worker.submit(recorded_job(runs, 1, started))
        wait_until(started.exists, 30, "the job to start")
        proxy.stop()
        worker.wait_for_log("job finished")
        worker.wait_for_log("queue call failed; retrying")  # its result cannot go out
        kill_supervisor(worker)
        proxy.start()
        worker.start()
        (resumed,) = worker.wait_for_log("delivering what the previous run left")
        assert resumed["unsent_results"] == 1
        result = worker.result(message_id, timeout=60)
        assert (result["status"], result["attempt"]) == ("succeeded", 1)
        wait_until(lambda: queue_is_empty(sqs, worker.queue_spec), 60, "the message to be deleted")
        assert run_count(runs) == 1
        assert len(finals(worker, message_id)) == 1
    finally:
        proxy.stop()


def test_a_finished_job_that_comes_back_is_answered_from_the_journal(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    port = free_port()
    worker = worker_factory(options=["--metrics-port", str(port)])
    runs = tmp_path / "runs"
    message_id = worker.submit(recorded_job(runs))
    # A worker received it, finished it and died before sending anything: its outcome is in
    # the journal, and by now the message was received again, so that receipt is dead.
    (first,) = worker.jobs.receive(1, 0, visibility_timeout=0.1)
    stored = {"id": message_id, "message_id": message_id, "status": "succeeded", "final": True, "attempt": 1}
    journal = SqliteJournal(worker.journal_path)
    journal.record([Outcome(message_id, message_id, 1, "succeeded", True, first.receipt, json.dumps(stored))])
    journal.close()
    wait_until(lambda: worker.jobs.receive(1, 0, visibility_timeout=0.1), 10, "the message to be received again")
    worker.start()
    assert worker.result(message_id) == stored
    (duplicate,) = worker.wait_for_log("duplicate delivery of a finished job")
    assert (duplicate["message_id"], duplicate["status"]) == (message_id, "succeeded")
    wait_until(lambda: worker.jobs.count() == 0, 20, "the message to be deleted")
    assert run_count(runs) == 0 and not worker.log_records_with("job started")
    assert len(worker.results_for(message_id)) == 1
    assert "api_worker_duplicate_deliveries_total 1.0" in metrics(port)


@pytest.mark.parametrize("dedupe", ["job-id", "message-id"])
def test_a_job_resent_under_its_id(worker_factory: WorkerFactory, tmp_path: Path, dedupe: str) -> None:
    worker = worker_factory(options=["--dedupe", dedupe]).start()
    runs = tmp_path / "runs"
    body = recorded_job(runs, id="order-42")
    first = worker.result(worker.submit(body))
    assert (first["id"], first["status"]) == ("order-42", "succeeded")
    again = worker.submit(body)
    if dedupe == "job-id":
        (duplicate,) = worker.wait_for_log("duplicate delivery of a finished job")
        assert (duplicate["job_id"], duplicate["message_id"]) == ("order-42", again)
        assert duplicate["finished_as"] == first["message_id"]
        wait_until(lambda: worker.jobs.count() == 0, 20, "the resent message to be deleted")
        assert run_count(runs) == 1 and worker.results_for(again) == []
    else:
        assert worker.result(again)["status"] == "succeeded"
        assert run_count(runs) == 2


def _not_a_database(path: Path) -> str:
    path.write_bytes(b"\x00garbage that is not a journal\n" * 64)
    return "is not an SQLite database"


def _newer(path: Path) -> str:
    SqliteJournal(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    db.close()
    return "was written by a newer api-worker"


def _corrupt(path: Path) -> str:
    journal = SqliteJournal(path)
    journal.record([Outcome(f"m{i}", f"m{i}", 1, "succeeded", True, "r", "{}") for i in range(300)])
    journal._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journal.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page * 2 : page * 4] = b"\xff" * (page * 2)
    path.write_bytes(bytes(data))
    return "is corrupt"


@pytest.mark.parametrize("spoil", [_not_a_database, _newer, _corrupt], ids=["not-a-database", "newer", "corrupt"])
def test_a_bad_journal_stops_the_worker_with_one_line(
    worker_factory: WorkerFactory, spoil: Callable[[Path], str]
) -> None:
    worker = worker_factory()
    worker.journal_path.parent.mkdir(parents=True, exist_ok=True)
    problem = spoil(worker.journal_path)
    before = worker.journal_path.read_bytes()
    completed = subprocess.run(worker.command(), capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 2
    lines = [json.loads(line) for line in completed.stderr.splitlines() if "journal" in line]
    assert len(lines) == 1, completed.stderr
    assert lines[0]["level"] == "CRITICAL"
    assert lines[0]["message"].startswith(f"journal {worker.journal_path} ") and problem in lines[0]["message"]
    assert "Traceback" not in completed.stderr
    assert worker.journal_path.read_bytes() == before  # never rewritten


def test_a_journal_that_cannot_be_written_loses_no_result(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making the journal unwritable (chattr +i) needs root")
    port = free_port()
    worker = worker_factory(options=["--metrics-port", str(port)]).start()
    assert worker.result(worker.submit(job()))["status"] == "succeeded"
    wal = worker.journal_path.with_name(worker.journal_path.name + "-wal")
    subprocess.run(["chattr", "+i", str(wal)], check=True)  # writes now fail as on a broken disk
    try:
        assert worker.result(worker.submit(job()))["status"] == "succeeded"
        (failure,) = worker.wait_for_log("journal write failed")[:1]
        assert "delivered without a journal entry" in failure["consequence"]
        body = wait_until(lambda: health(port)[1] if health(port)[0] == 503 else None, 20, "an unhealthy report")
        assert any(f"journal {worker.journal_path} cannot be written" in problem for problem in body["problems"])
    finally:
        subprocess.run(["chattr", "-i", str(wal)], check=True)
    assert worker.result(worker.submit(job()))["status"] == "succeeded"
    worker.wait_for_log("journal writes go through again")
    wait_until(lambda: health(port)[0] == 200, 20, "healthy again")


def test_finished_jobs_are_forgotten_after_the_retention(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(options=["--journal-retention", "2s"]).start()
    message_id = worker.submit(job())
    assert worker.result(message_id)["status"] == "succeeded"
    reader = SqliteJournal(worker.journal_path, writer=False)
    assert message_id in reader.finished([message_id])
    (pruned,) = worker.wait_for_log("pruned finished jobs past the retention", timeout=30)
    assert pruned["jobs"] == 1
    assert reader.finished([message_id]) == {}

"""A fleet of different boxes on one SQS queue and one job table (moto's server, over HTTP):
a job too big for its box waits for a box that fits it, a job no box can run is rejected
naming the largest shape, and a box's registration lapses when it dies and counts for
nothing while it drains."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from testkit.moto_server import MotoServer, create_job_table, free_port
from testkit.waiting import wait_until
from tests.support import REPO, SUPERVISOR, Worker, job, metrics, new_queue, queue_is_empty

HEARTBEAT_S = 1  # a registration lapses after 4 s without one


class Fleet:
    """Workers on one jobs queue, one results queue and one job table; results by job id."""

    def __init__(self, tmp_path: Path, sqs: Any) -> None:
        self.tmp_path, self.sqs = tmp_path, sqs
        self.table = f"jobs-{uuid.uuid4().hex[:8]}"
        create_job_table(self.table)
        self.jobs, self.results = new_queue(sqs, "jobs"), new_queue(sqs, "results")
        self.workers: list[Worker] = []
        self.finals: dict[str, list[dict[str, Any]]] = {}

    def worker(self, name: str, memory: str, *options: str) -> Worker:
        directory = self.tmp_path / name
        directory.mkdir()
        worker_options = [
            "--name", name, "--job-table", self.table, "--memory-capacity", memory,
            "--fleet-heartbeat", str(HEARTBEAT_S), *options,
        ]  # fmt: skip
        worker = Worker(directory, queue=self.jobs, result_queue=self.results, workers=2, options=worker_options)
        self.workers.append(worker)
        return worker.start()

    def submit(self, job_id: str, memory: str, runs: Path | None = None, sleep_s: float = 0) -> None:
        arguments: list[dict[str, Any]] = [{"type": "parameter", "name": "--sleep", "value": sleep_s}]
        if runs is not None:
            arguments.append({"type": "parameter", "name": "--record-run", "value": str(runs)})
        body = job(arguments, id=job_id, resources={"memory": memory})
        self.sqs.send_message(QueueUrl=self.jobs, MessageBody=json.dumps(body))

    def final(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            self._drain()
            return next(iter(self.finals.get(job_id, [])), None)

        return wait_until(found, timeout, f"the final result of {job_id}")

    def _drain(self) -> None:
        answer = self.sqs.receive_message(QueueUrl=self.results, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for message in answer.get("Messages", []):
            result = json.loads(message["Body"])
            if result["final"]:
                self.finals.setdefault(result["id"], []).append(result)
            self.sqs.delete_message(QueueUrl=self.results, ReceiptHandle=message["ReceiptHandle"])

    def boxes(self) -> list[dict[str, Any]]:
        """`supervisor.py fleet --json`: the live boxes."""
        command = [sys.executable, str(SUPERVISOR), "--queue", self.jobs, "--job-table", self.table, "fleet", "--json"]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
        boxes: list[dict[str, Any]] = json.loads(done.stdout)["boxes"]
        return boxes

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def fleet(tmp_path: Path, sqs: Any, moto: MotoServer) -> Any:
    made = Fleet(tmp_path, sqs)
    yield made
    made.stop()


def sees(worker: Worker, other: Worker) -> None:
    """Wait until `worker` has read `other`'s registration."""
    assert other.process is not None

    def seen() -> bool:
        joined = [box for record in worker.log_records_with("the fleet's boxes changed") for box in record["joined"]]
        return any(box.endswith(f"/{other.process.pid}") for box in joined)  # type: ignore[union-attr]

    wait_until(seen, 30, "the worker to see the other box")


def shapes_file(tmp_path: Path) -> Path:
    path = tmp_path / "shapes.toml"
    path.write_text('[shapes.big]\nmemory = "3G"\ncpus = 2\n\n[shapes.small]\nmemory = "1G"\ncpus = 2\n')
    return path


@pytest.mark.integration
def test_jobs_too_big_for_the_small_box_all_run_once_on_the_big_one(fleet: Fleet, tmp_path: Path) -> None:
    big = fleet.worker("big", "3G", "--job-disk", "20G")
    small = fleet.worker("small", "1G")
    sees(small, big)
    shapes = {
        box["box"].split("/")[1]: (box["memory_bytes"], box["disk_bytes"], box["queues"]) for box in fleet.boxes()
    }
    assert shapes == {"big": (3 * 1024**3, 20 * 1024**3, ["native"]), "small": (1024**3, None, ["native"])}
    runs = {f"two-gib-{n}": tmp_path / f"runs-{n}" for n in range(4)}
    for job_id, recorded in runs.items():
        fleet.submit(job_id, "2G", recorded)

    finals = {job_id: fleet.final(job_id, timeout=90) for job_id in runs}
    assert {result["status"] for result in finals.values()} == {"succeeded"}, finals
    assert big.process is not None
    assert {result["worker"]["pid"] for result in finals.values()} == {big.process.pid}
    assert [len(recorded.read_text().splitlines()) for recorded in runs.values()] == [1, 1, 1, 1]
    assert all(result["attempt"] == 1 for result in finals.values())  # a pass spends no attempt
    assert not small.log_records_with("job started")
    assert all(len(fleet.finals[job_id]) == 1 for job_id in runs)


@pytest.mark.integration
def test_a_job_waits_for_a_declared_shape_and_one_no_shape_fits_is_rejected(fleet: Fleet, tmp_path: Path) -> None:
    port = free_port()
    small = fleet.worker("small", "1G", "--fleet-shapes", str(shapes_file(tmp_path)), "--metrics-port", str(port))
    fleet.submit("too-big", "8G")
    rejected = fleet.final("too-big")
    assert rejected["status"] == "rejected"
    assert "asks for 8 GiB of memory, the largest shape has 3 GiB (shape big)" in rejected["error"]["message"]

    runs = tmp_path / "runs"
    fleet.submit("waits", "2G", runs)
    small.wait_for_log("job too big for this box: passed on to wait for a shape that fits it")
    waiting = lambda: json.loads(urlopen_text(f"http://127.0.0.1:{port}/scaling"))["waiting_for"] == {"big": 1}  # noqa: E731
    wait_until(waiting, 10, "/scaling to count the job waiting for shape big")
    assert 'api_worker_jobs_waiting_for_shape{shape="big"} 1.0' in metrics(port)
    assert "passed on:  1 for big (too big for this box" in small.status_text()
    assert "waits" not in fleet.finals

    big = fleet.worker("big", "3G")
    result = fleet.final("waits", timeout=90)
    assert big.process is not None
    assert (result["status"], result["worker"]["pid"], result["attempt"]) == ("succeeded", big.process.pid, 1)
    assert len(runs.read_text().splitlines()) == 1


@pytest.mark.integration
def test_a_job_that_waited_too_long_ends_as_no_capacity(fleet: Fleet, tmp_path: Path) -> None:
    fleet.worker("small", "1G", "--fleet-shapes", str(shapes_file(tmp_path)), "--max-wait-for-capacity", "2s")
    fleet.submit("never", "2G")
    result = fleet.final("never", timeout=60)
    assert (result["status"], result["error"]["type"]) == ("error", "no_capacity")
    assert "for a box of shape big" in result["error"]["message"]


@pytest.mark.integration
def test_a_job_is_handed_on_once_to_the_big_boxes_queue(fleet: Fleet, tmp_path: Path) -> None:
    big_queue = new_queue(fleet.sqs, "big-jobs")
    small = fleet.worker("small", "1G", "--fleet-shapes", str(shapes_file(tmp_path)), "--hand-on", big_queue)
    fleet.submit("handed", "2G")
    small.wait_for_log("job too big for this box: passed on to wait for a shape that fits it")

    def handed() -> list[dict[str, Any]] | None:
        got = fleet.sqs.receive_message(QueueUrl=big_queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return got.get("Messages") or None

    messages = wait_until(handed, 30, "the job on the big boxes' queue")
    assert [json.loads(message["Body"])["id"] for message in messages] == ["handed"]
    wait_until(lambda: queue_is_empty(fleet.sqs, fleet.jobs), 30, "the original message to be deleted")


@pytest.mark.integration
def test_a_dead_box_lapses_and_a_draining_box_is_no_place_to_wait(fleet: Fleet, tmp_path: Path) -> None:
    draining = fleet.worker("draining", "3G", "--shutdown-grace", "60")
    small = fleet.worker("small", "1G")
    sees(small, draining)
    started = tmp_path / "started"
    arguments: list[dict[str, Any]] = [
        {"type": "parameter", "name": "--started", "value": str(started)},
        {"type": "parameter", "name": "--sleep", "value": 30},
    ]
    draining.submit(job(arguments, id="long", resources={"memory": "512M"}))
    wait_until(started.exists, 60, "the long job to start on the big box")
    draining.signal(signal.SIGTERM)  # it stops taking jobs; its running one finishes
    wait_until(lambda: any(box["draining"] for box in fleet.boxes()), 30, "the box to register as draining")
    assert draining.process is not None
    pid = draining.process.pid

    def read_as_draining() -> bool:
        changes = small.log_records_with("the fleet's boxes changed")
        return any(box.endswith(f"/{pid}") for record in changes for box in record["draining"])

    wait_until(read_as_draining, 30, "the small box to read it as draining")
    fleet.submit("nowhere", "2G")
    result = fleet.final("nowhere", timeout=60)
    assert result["status"] == "rejected", result
    assert "the largest shape has 1 GiB" in result["error"]["message"]

    # Killed, a box cannot take itself out: its registration lapses after missed heartbeats.
    doomed = fleet.worker("doomed", "3G", "--job-memory", "2G")
    assert doomed.process is not None
    doomed_id = f"/doomed/{doomed.process.pid}"
    registered = lambda: [box for box in fleet.boxes() if box["box"].endswith(doomed_id)]  # noqa: E731
    (entry,) = wait_until(registered, 30, "the box to register")
    assert entry["memory_bytes"] == 2 * 1024**3  # the largest job it runs: its --job-memory, not its capacity
    doomed.process.kill()
    doomed.process.wait()
    gone = lambda: not any(box["box"].endswith(doomed_id) for box in fleet.boxes())  # noqa: E731
    wait_until(gone, 30, "its registration to lapse")


def urlopen_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())

"""`supervisor.py cancel` on the embedded queue: a queued job never runs, a running native or
docker job is stopped (SIGTERM, the kill grace, SIGKILL) and answered `canceled`."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docker import APIClient

from testkit.waiting import wait_until
from tests.engine import worker_containers
from tests.support import REPO, SUPERVISOR, Worker, job, process_exists

WorkerFactory = Callable[..., Worker]
POLL_S = 0.5
KILL_GRACE_S = 1.0


def cancel(worker: Worker, job_id: str, *options: str) -> subprocess.CompletedProcess[str]:
    """`supervisor.py cancel` as an operator runs it against the worker's queue and journal."""
    command = [sys.executable, str(SUPERVISOR), "--queue", worker.queue_spec, "--journal", str(worker.journal_path)]
    command += ["--log-format", "json", "cancel", job_id, *options]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60, check=False)


def sleeping_job(job_id: str, started: Path, sleep_s: float = 300) -> dict[str, Any]:
    arguments: list[dict[str, Any]] = [
        {"type": "parameter", "name": "--started", "value": str(started)},
        {"type": "parameter", "name": "--sleep", "value": sleep_s},
    ]
    return job(arguments, id=job_id)


def test_a_queued_job_that_is_canceled_never_runs(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory()
    started = tmp_path / "started"
    message_id = worker.submit(sleeping_job("job-queued", started, sleep_s=0))

    asked = cancel(worker, "job-queued", "--reason", "wrong inputs")
    assert asked.returncode == 0, asked.stderr
    assert "cancel requested for job job-queued (queued)" in asked.stdout
    worker.start()
    result = worker.result(message_id)

    assert result["status"] == "canceled" and result["final"] is True, result
    assert "wrong inputs" in result["error"]["message"] and "before it started" in result["error"]["message"]
    assert "canceled by " in result["error"]["message"]
    assert not started.exists()
    assert worker.jobs.count() == 0  # its message deleted


def test_a_cancel_request_ends_with_its_job_and_a_later_job_with_that_id_runs(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory()
    started = tmp_path / "started"
    canceled = worker.submit(sleeping_job("job-again", started, sleep_s=0))
    assert cancel(worker, "job-again").returncode == 0
    worker.start()
    assert worker.result(canceled)["status"] == "canceled"

    again = worker.result(worker.submit(sleeping_job("job-again", started, sleep_s=0)))
    assert (again["status"], again["id"]) == ("succeeded", "job-again"), again
    assert started.exists()


def test_a_running_native_job_is_stopped_and_its_outputs_not_uploaded(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    options = ["--cancel-poll", str(POLL_S), "--kill-grace", str(KILL_GRACE_S), "--file-root", str(outputs)]
    worker = worker_factory(options=options).start()
    started = tmp_path / "started"
    body = sleeping_job("job-native", started)
    body["command"]["arguments"].append({"type": "output", "name": "--outfile", "value": f"file://{outputs}/out"})
    message_id = worker.submit(body)
    wait_until(started.exists, 20, "the job to start")
    job_pid = int(started.read_text())
    asked_at = time.monotonic()

    asked = cancel(worker, "job-native", "--reason", "sent by mistake", "--wait", "--timeout", "30")
    result = worker.result(message_id)

    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert "job job-native: canceled" in asked.stdout
    assert result["status"] == "canceled", result
    assert result["error"]["message"].endswith(": sent by mistake")
    assert time.monotonic() - asked_at < POLL_S + KILL_GRACE_S + 5 + 5  # the CLI's own start included
    assert result["outputs"] == [] and not (outputs / "out").exists()
    assert not process_exists(job_pid)
    assert worker.leftovers() == []
    assert worker.jobs.count() == 0


def test_a_running_docker_job_is_stopped_and_its_container_removed(
    worker_factory: WorkerFactory, tool_image: str, docker_api: APIClient
) -> None:
    options = ["--cancel-poll", str(POLL_S), "--kill-grace", str(KILL_GRACE_S)]
    worker = worker_factory(options=options, runner=["docker"]).start()
    body = {"service": tool_image, "queue": "docker", "id": "job-docker",
            "command": {"arguments": [{"type": "parameter", "name": "--sleep", "value": 300}]}}  # fmt: skip
    message_id = worker.submit(body)
    wait_until(lambda: worker_containers(docker_api, worker.scratch), 30, "the job's container")
    asked_at = time.monotonic()

    asked = cancel(worker, "job-docker")
    result = worker.result(message_id)

    assert asked.returncode == 0, asked.stderr
    assert result["status"] == "canceled", result
    assert "no reason given" in result["error"]["message"]
    assert time.monotonic() - asked_at < POLL_S + KILL_GRACE_S + 5 + 5
    assert worker_containers(docker_api, worker.scratch) == []
    assert worker.leftovers() == []


def test_an_unknown_or_finished_job_is_said_so(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory().start()
    message_id = worker.submit(job(id="job-done"))
    assert worker.result(message_id)["status"] == "succeeded"

    finished = cancel(worker, "job-done")
    unknown = cancel(worker, "job-nobody-sent")

    assert (finished.returncode, finished.stdout.strip()) == (5, "job job-done already finished: succeeded")
    assert unknown.returncode == 6 and "no job job-nobody-sent on queue" in unknown.stderr

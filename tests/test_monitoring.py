"""Metrics, health, status and systemd notifications, from a running supervisor."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from common.faults import ENVIRONMENT_VARIABLE
from monitoring.state import WorkerState
from testkit.moto_server import free_port
from testkit.waiting import wait_until
from tests.support import REPO, SUPERVISOR, Worker, job


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(metrics_text: str) -> dict[str, float]:
    """`name{labels}` -> value, from the Prometheus text format."""
    found = {}
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_metrics_and_health_from_a_running_supervisor(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "in.txt").write_bytes(b"x" * 5000)
    port = free_port()
    worker = Worker(tmp_path, workers=2, options=["--metrics-port", str(port), "--file-root", str(store)])
    try:
        worker.start()
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: get(f"{base}/healthz")[0] == 200, 20, "a healthy worker")
        staged = [
            {"type": "input", "name": "--infile", "value": f"file://{store}/in.txt"},
            {"type": "output", "name": "--outfile", "value": f"file://{store}/out.txt"},
        ]
        finished = [
            worker.submit(job(staged)),
            worker.submit(job([{"type": "parameter", "name": "--exit", "value": 3}])),
        ]
        for message_id in finished:
            worker.result(message_id)
        # The state is published once a second: wait for the one that counts both jobs.
        wait_until(lambda: sum(json.loads(get(f"{base}/status")[1]).get("jobs", {}).values()) == 2, 20, "2 jobs")

        status, text = get(f"{base}/metrics")
        assert status == 200
        metrics = samples(text)
        assert metrics['api_worker_jobs_total{status="succeeded"}'] == 1
        assert metrics['api_worker_jobs_total{status="failed"}'] == 1
        assert metrics['api_worker_job_duration_seconds_count{status="succeeded"}'] == 1
        assert metrics['api_worker_staged_bytes_sum{direction="in"}'] == 5000
        assert metrics['api_worker_staged_bytes_sum{direction="out"}'] == 5000
        assert metrics['api_worker_slots{state="busy"}'] == 0
        assert metrics['api_worker_slots{state="idle"}'] == 2
        assert metrics["api_worker_messages_in_flight"] == 0
        assert "api_worker_queue_errors_total" in text or "# TYPE api_worker_queue_errors counter" in text

        status, body = get(f"{base}/healthz")
        assert (status, json.loads(body)["status"]) == (200, "ok")
        state = json.loads(get(f"{base}/status")[1])
        assert (state["workers"], state["jobs"], state["kind"]) == (2, {"succeeded": 1, "failed": 1}, "native")
    finally:
        worker.stop()


def test_health_fails_when_the_supervisor_loop_is_stuck(tmp_path: Path) -> None:
    port = free_port()
    worker = Worker(
        tmp_path,
        options=["--metrics-port", str(port), "--health-stall-limit", "2"],
        environment={ENVIRONMENT_VARIABLE: "dispatch-stall:1"},  # the loop hangs 6 s at its first job
    )
    try:
        worker.start()
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: get(f"{base}/healthz")[0] == 200, 20, "a healthy worker")
        worker.submit(job())
        _, body = wait_until(
            lambda: response if (response := get(f"{base}/healthz"))[0] == 503 else None, 30, "unhealthy"
        )
        assert "the supervisor loop has not run for" in json.loads(body)["problems"][0]
        wait_until(lambda: get(f"{base}/healthz")[0] == 200, 30, "the worker healthy again")
    finally:
        worker.stop()


def test_unhealthy_states() -> None:
    now = time.time()
    state = WorkerState(
        pid=1, version="x", kind="native", queue="q", workers=2, started_at=now, updated_at=now, busy=0, idle=2,
        starting=0, in_flight=0, held=0, jobs={}, queue_errors=0, child_restarts=0, boot_failures=0, stopping=False,
    )  # fmt: skip
    assert state.problems(now) == []
    assert state.problems(now + 31) == ["the supervisor loop has not run for 31 s"]
    broken = WorkerState(**{**_fields(state), "boot_failures": 2})
    assert broken.problems(now) == ["2 children in a row died while starting"]
    assert WorkerState(**{**_fields(state), "stopping": True}).problems(now) == ["stopping"]


def _fields(state: WorkerState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in state.__struct_fields__}


def run_status(scratch: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SUPERVISOR), "--scratch-dir", str(scratch), "status"],
        capture_output=True, text=True, cwd=REPO, check=False, timeout=60,
    )  # fmt: skip


def test_status_command_describes_a_running_worker(tmp_path: Path) -> None:
    worker = Worker(tmp_path, workers=2)
    try:
        worker.start()
        worker.result(worker.submit(job()))
        completed = wait_until(
            lambda: c if "1 succeeded" in (c := run_status(worker.scratch)).stdout else None, 20, "the job counted"
        )
        assert completed.returncode == 0, completed.stderr
        assert "health:     ok" in completed.stdout
        assert "slots:      0 busy, 2 idle, 0 starting, of 2" in completed.stdout
    finally:
        worker.stop()
    stopped = run_status(worker.scratch)
    assert stopped.returncode == 3
    assert "not running" in stopped.stdout
    assert run_status(tmp_path / "elsewhere").returncode == 3


def test_systemd_hears_ready_status_watchdog_and_stopping(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(20)
    worker = Worker(tmp_path, environment={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
    heard: list[str] = []

    def hear(what: str) -> None:
        while not any(what in message for message in heard):
            heard.append(listener.recv(4096).decode())

    try:
        worker.start()
        hear("READY=1")
        assert any("STATUS=0 of 1 slots busy" in message for message in heard)
        heard.clear()
        hear("WATCHDOG=1")
        hear("WATCHDOG=1")  # again: the loop keeps pinging
        assert worker.process is not None
        worker.process.send_signal(signal.SIGTERM)
        hear("STOPPING=1")
        assert worker.wait_exit() == 0
    finally:
        worker.stop()
        listener.close()
        os.unlink(address)


def test_metrics_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = subprocess.run(
            [sys.executable, str(SUPERVISOR), "--queue", f"local:{tmp_path}/q.sqlite3", "--scratch-dir",
             str(tmp_path / "scratch"), "--journal", str(tmp_path / "journal.sqlite3"), "--metrics-port", str(port),
             "native", "--", "true"],
            capture_output=True, text=True, cwd=REPO, check=False, timeout=60,
        )  # fmt: skip
    assert completed.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in completed.stderr


@pytest.mark.parametrize("value", ["0", "70000", "http"])
def test_metrics_port_must_be_a_port(tmp_path: Path, value: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(SUPERVISOR), "--metrics-port", value, "native", "--", "true"],
        capture_output=True, text=True, cwd=REPO, check=False, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "--metrics-port" in completed.stderr

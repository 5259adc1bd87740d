"""Backstops: a failing supervisor loop stops cleanly with its own exit code; helper threads
survive unexpected exceptions, show in /healthz while they fail, and the work goes on."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from common.faults import ENVIRONMENT_VARIABLE
from monitoring.state import STATUS_FILE_NAME
from pool.supervisor import EXIT_LOOP_FAILURE
from testkit.moto_server import free_port
from testkit.waiting import wait_until
from tests.support import Worker, health, job, metrics, pool_children, process_exists

WorkerFactory = Callable[..., Worker]


def unhealthy_with(port: int, words: str) -> list[str] | None:
    status, body = health(port)
    problems = body.get("problems", [])
    return problems if status == 503 and any(words in problem for problem in problems) else None


def test_a_failing_loop_releases_its_messages_and_exits_with_its_own_code(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(environment={ENVIRONMENT_VARIABLE: "dispatch:1"}).start()
    message_id = worker.submit(job())
    assert worker.wait_exit(30) == EXIT_LOOP_FAILURE
    (failure,) = worker.log_records_with("the supervisor loop failed; stopping (the service manager restarts it)")
    assert "fault injected at dispatch" in failure["exc_info"]
    worker.wait_for_log("releasing messages")
    status = json.loads((worker.scratch / STATUS_FILE_NAME).read_text())
    assert status["stopping"] is True
    # Released, not lost: the next worker runs it.
    worker.environment = None
    worker.start()
    result = worker.result(message_id)
    assert (result["status"], result["attempt"]) == ("succeeded", 2)


def test_a_loop_that_fails_handing_out_the_next_job_still_delivers_the_report_it_had(
    worker_factory: WorkerFactory,
) -> None:
    worker = worker_factory(environment={ENVIRONMENT_VARIABLE: "report-dispatch:1"}).start()
    message_id = worker.submit(job())
    assert worker.wait_exit(30) == EXIT_LOOP_FAILURE
    (failure,) = worker.log_records_with("the supervisor loop failed; stopping (the service manager restarts it)")
    assert "fault injected at report-dispatch" in failure["exc_info"]
    # Journaled and delivered on the way out: not run again.
    result = worker.result(message_id)
    assert (result["status"], result["attempt"]) == ("succeeded", 1)


def test_an_intake_thread_that_fails_restarts_and_shows_in_health(sqs_worker: Any) -> None:
    port = free_port()
    worker = sqs_worker(options=["--metrics-port", str(port)], environment={ENVIRONMENT_VARIABLE: "intake:3"})
    worker.start()
    (problem,) = wait_until(lambda: unhealthy_with(port, "the intake thread is failing"), 20, "an unhealthy intake")
    assert "fault injected at intake" in problem
    assert worker.result(worker.submit(job()), timeout=60)["status"] == "succeeded"
    wait_until(lambda: health(port)[0] == 200, 20, "healthy again")
    assert 'api_worker_thread_failures_total{thread="intake"} 3.0' in metrics(port)
    assert len(worker.log_records_with("intake failed unexpectedly; restarting it")) == 3


def test_an_outbox_that_fails_loses_no_result_and_shows_in_health(sqs_worker: Any) -> None:
    port = free_port()
    worker = sqs_worker(options=["--metrics-port", str(port)], environment={ENVIRONMENT_VARIABLE: "outbox:4"})
    worker.start()
    message_id = worker.submit(job())
    wait_until(lambda: unhealthy_with(port, "the outbox thread is failing"), 30, "an unhealthy outbox")
    assert worker.result(message_id, timeout=60)["status"] == "succeeded"
    wait_until(lambda: health(port)[0] == 200, 20, "healthy again")
    assert 'api_worker_thread_failures_total{thread="outbox"} 4.0' in metrics(port)
    assert len(worker.results_for(message_id)) == 1


def test_a_stopped_child_is_replaced_and_its_job_handed_on(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(workers=2).start()
    worker.wait_for_log("pool ready")
    stopped = pool_children(worker)[0]
    os.kill(stopped, signal.SIGSTOP)
    try:
        big = "x" * (200 * 1024)  # over the pipe's capacity: handing it over must not block the loop
        sent = [
            worker.submit(job(command={"stdin": {"type": "pipe", "value": big if index % 2 else "small"}}))
            for index in range(6)
        ]
        results = [worker.result(message_id, timeout=60) for message_id in sent]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGCONT)
    assert all(result["status"] == "succeeded" for result in results)
    assert all(result["attempt"] == 1 for result in results)  # handing a job on costs no attempt
    assert {len(result["stdout"]) for result in results} == {len("small"), len(big)}
    (replaced,) = worker.log_records_with("child did not take its job; replacing it and handing the job on")
    assert replaced["pid"] == stopped
    assert stopped not in pool_children(worker) and len(pool_children(worker)) == 2


class BlackHole:
    """An endpoint that accepts connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.listener.accept()[0])

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


class StallingS3(http.server.ThreadingHTTPServer):
    """An S3 endpoint whose objects all exist, 1 MB each, and whose downloads stall after 64 KB."""

    daemon_threads = True
    size = 1024 * 1024

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.stalled = threading.Event()  # a GET got its first bytes and hangs
        super().__init__(("127.0.0.1", 0), _StallingHandler)
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        self.shutdown()
        self.server_close()


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    server: StallingS3

    def _headers(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(self.server.size))
        self.send_header("ETag", '"stalling"')
        self.send_header("Last-Modified", "Sat, 28 Nov 2026 00:00:00 GMT")
        self.end_headers()

    def do_HEAD(self) -> None:
        self._headers()

    def do_GET(self) -> None:
        self._headers()
        self.wfile.write(b"x" * 65536)
        self.wfile.flush()
        self.server.stalled.set()
        self.server.closed.wait(120)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def s3_at(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


S3_INPUT = {"type": "input", "name": "--infile", "value": "s3://bucket/in.txt"}


@pytest.mark.parametrize("endpoint", ["silent", "stalling"])
def test_a_hung_s3_endpoint_costs_a_job_no_more_than_the_transfer_timeout(
    worker_factory: WorkerFactory, endpoint: str
) -> None:
    server = BlackHole() if endpoint == "silent" else StallingS3()
    try:
        port = free_port()
        options = ["--transfer-timeout", "5", "--max-attempts", "1", "--metrics-port", str(port)]
        worker = worker_factory(options=options, environment=s3_at(server.endpoint)).start()
        began = time.monotonic()
        result = worker.result(worker.submit(job([S3_INPUT])), timeout=30)
        assert time.monotonic() - began < 30
        assert (result["status"], result["final"], result["error"]["type"]) == ("error", True, "staging")
        assert result["error"]["message"] == (
            "stage-in took longer than the transfer timeout of 5 s (in transfer: s3://bucket/in.txt)"
        )
        assert worker.result(worker.submit(job()))["status"] == "succeeded"  # the slot is free again
        assert worker.leftovers() == []
        assert health(port)[0] == 200  # a hung store costs one job, not the worker's health
    finally:
        server.close()


def test_sigterm_during_a_stalled_download_stops_the_worker_promptly(worker_factory: WorkerFactory) -> None:
    server = StallingS3()
    try:
        worker = worker_factory(
            options=["--shutdown-grace", "1", "--kill-grace", "2"], environment=s3_at(server.endpoint)
        ).start()
        message_id = worker.submit(job([S3_INPUT]))
        wait_until(server.stalled.is_set, 20, "a download under way")
        began = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit(30) == 0
        assert time.monotonic() - began < 1 + 2 + 5  # shutdown grace + kill grace + a few seconds
        assert worker.leftovers() == []
        (released,) = worker.jobs.receive(1, 0, visibility_timeout=30)  # visible again at once
        assert (released.message_id, released.receive_count) == (message_id, 2)
    finally:
        server.close()


def test_a_job_held_past_the_supervisors_deadline_loses_its_child(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    # Deadline: 2 x 1 s of transfers + 2 s of timeout + 1 s of kill grace + 1 s of margin = 6 s.
    options = ["--job-timeout", "2", "--transfer-timeout", "1", "--kill-grace", "1", "--deadline-margin", "1"]
    worker = worker_factory(options=options).start()
    started = tmp_path / "started"
    message_id = worker.submit_and_await_start(started, 60)
    job_pid = int(started.read_text())
    child = psutil.Process(job_pid).parent()
    assert child is not None
    child.suspend()  # the child can no longer enforce the job's own timeout
    (overdue,) = worker.wait_for_log("job outlived the supervisor's deadline; killing its child", timeout=30)
    assert (overdue["deadline_s"], overdue["pid"]) == (6, child.pid)
    wait_until(lambda: not process_exists(job_pid), 10, "the job's processes to be killed")
    first = wait_until(lambda: worker.results_for(message_id), 20, "the first result")[0]
    assert (first["status"], first["final"], first["attempt"]) == ("error", False, 1)
    assert first["error"]["message"] == "the job outlived the worker's deadline of 6 s; its child was killed"
    final = worker.result(message_id)  # handed back at once: the retry runs into its own timeout
    assert (final["status"], final["attempt"]) == ("timeout", 2)
    assert child.pid not in pool_children(worker) and len(pool_children(worker)) == 1


def test_a_monitoring_server_thread_that_fails_restarts_and_serves_again(worker_factory: WorkerFactory) -> None:
    port = free_port()
    worker = worker_factory(options=["--metrics-port", str(port)], environment={ENVIRONMENT_VARIABLE: "monitoring:2"})
    worker.start()
    worker.wait_for_log("pool ready")
    wait_until(lambda: _answers(port), 30, "the monitoring server serving after its restarts")
    failures = worker.log_records_with("a helper thread failed; restarting it")
    assert [record["helper"] for record in failures] == ["monitoring", "monitoring"]
    assert "fault injected at monitoring" in failures[0]["exc_info"]
    assert 'api_worker_thread_failures_total{thread="monitoring"} 2.0' in metrics(port)
    assert worker.result(worker.submit(job()))["status"] == "succeeded"


def test_a_progress_watcher_that_fails_restarts_and_the_job_goes_on(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(environment={ENVIRONMENT_VARIABLE: "progress:2"}).start()
    message = job([{"type": "parameter", "name": "--progress", "value": "50 halfway"},
                   {"type": "parameter", "name": "--sleep", "value": 1.5}], events=True)  # fmt: skip
    message_id = worker.submit(message)
    assert worker.result(message_id)["status"] == "succeeded"
    progress = [event for event in worker.results_for(message_id) if event["status"] == "progress"]
    assert progress and progress[-1]["progress"] == {"percent": 50.0, "message": "halfway"}
    failures = worker.log_records_with("a helper thread failed; restarting it")
    assert [record["helper"] for record in failures] == ["progress", "progress"]


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError, urllib.error.URLError):
        return health(port)[0] in (200, 503)
    return False

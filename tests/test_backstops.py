"""Backstops: a failing supervisor loop stops cleanly with its own exit code; helper threads
survive unexpected exceptions, show in /healthz while they fail, and the work goes on."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from monitoring.state import STATUS_FILE_NAME
from pool.faults import ENVIRONMENT_VARIABLE
from pool.supervisor import EXIT_LOOP_FAILURE
from tests.support import Worker, free_port, health, job, pool_children, wait_until

WorkerFactory = Callable[..., Worker]


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


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

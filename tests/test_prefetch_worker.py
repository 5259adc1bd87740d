"""Prefetch on SQS (moto's server over HTTP): short jobs are held ahead, long ones never;
held messages are kept visible by the heartbeat and released at once on SIGTERM."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from monitoring.state import read_state, status_path
from testkit.waiting import wait_until
from tests.support import Worker, job, new_queue


def _sleeping_job(seconds: float) -> dict[str, Any]:
    return job([{"type": "parameter", "name": "--sleep", "value": seconds}])


def _held(worker: Worker) -> int:
    try:
        return read_state(status_path(worker.scratch)).held
    except (OSError, ValueError):
        return 0


def _hidden_messages(sqs: Any, queue: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"])


def _receive_all(worker: Worker) -> list[Any]:
    received: list[Any] = []
    while batch := worker.jobs.receive(10, 0, visibility_timeout=60):
        received += batch
    return received


def test_two_one_slot_workers_share_long_jobs_without_hoarding(tmp_path: Path, sqs: Any) -> None:
    jobs, results = new_queue(sqs, "jobs"), new_queue(sqs, "results")
    workers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        workers.append(Worker(tmp_path / name, queue=jobs, result_queue=results))
    try:
        for worker in workers:
            worker.start().wait_for_log("pool ready")
        sent = [workers[0].submit(_sleeping_job(4)) for _ in range(4)]
        finals = [workers[0].result(message_id, timeout=60) for message_id in sent]
        assert all(result["status"] == "succeeded" for result in finals)
        assert sorted(Counter(result["worker"]["pid"] for result in finals).values()) == [2, 2]
        assert all(_held(worker) == 0 for worker in workers)
    finally:
        for worker in workers:
            worker.stop()


def test_short_jobs_are_held_ahead_and_released_at_once_on_sigterm(tmp_path: Path, sqs: Any) -> None:
    jobs = new_queue(sqs, "jobs")
    worker = Worker(tmp_path, queue=jobs, result_queue=new_queue(sqs, "results"), options=["--prefetch-window", "3"])
    try:
        worker.start().wait_for_log("pool ready")
        sent = [worker.submit(_sleeping_job(0.3)) for _ in range(30)]
        wait_until(lambda: _held(worker) > 0, 30, "the worker to hold messages")
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        # Hidden now: at most the one running job's message.
        wait_until(lambda: _hidden_messages(sqs, jobs) <= 1, 10, "the held messages to be released")
        assert time.monotonic() - signalled < 1.0
        assert worker.wait_exit() == 0
        finished = [message_id for message_id in sent if worker.results_for(message_id)]
        assert all(len(worker.results_for(message_id)) == 1 for message_id in finished)
        left = {message.message_id: message.receive_count for message in _receive_all(worker)}
        assert set(left) == set(sent) - set(finished)
        assert 2 in left.values()  # held, released, never run
    finally:
        worker.stop()


def test_a_held_message_outliving_the_visibility_timeout_is_kept(tmp_path: Path, sqs: Any) -> None:
    worker = Worker(
        tmp_path,
        queue=new_queue(sqs, "jobs"),
        result_queue=new_queue(sqs, "results"),
        options=["--visibility-timeout", "2", "--prefetch-window", "10"],
    )
    try:
        worker.start().wait_for_log("pool ready")
        sent = [worker.submit(_sleeping_job(0.8)) for _ in range(7)]
        # After the first job the other six are received together; the last waits about 5 s.
        wait_until(lambda: _held(worker) >= 3, 30, "the worker to hold messages")
        finals = [worker.result(message_id, timeout=60) for message_id in sent]
        assert [(result["status"], result["attempt"]) for result in finals] == [("succeeded", 1)] * 7
        assert len(worker.log_records_with("job started")) == 7
    finally:
        worker.stop()

"""The scaling signal: `/scaling` and `api_worker_slots_wanted` count the jobs running and
held here and the queue's visible backlog, which is asked at most once every few seconds."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from queues.backlog import CachedBacklog
from queues.base import OutgoingMessage, QueueDepth, QueueError
from testkit.moto_server import free_port
from testkit.waiting import wait_until
from tests.support import Worker, job, metrics, new_queue


def _scaling(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/scaling", timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


@pytest.mark.integration
def test_seven_queued_long_jobs_on_two_slots_want_seven(worker_factory: Any) -> None:
    port = free_port()
    worker: Worker = worker_factory(workers=2, options=["--metrics-port", str(port)]).start()
    for _ in range(7):
        worker.submit(job([{"type": "parameter", "name": "--sleep", "value": 30}]))

    def both_busy() -> dict[str, Any] | None:
        answer = _scaling(port)
        return answer if answer["busy"] == 2 else None

    signal = wait_until(both_busy, 30, "two jobs running")
    assert (signal["slots"], signal["busy"], signal["waiting_for"]) == (2, 2, {})
    assert signal["held"] + signal["queued"] >= 5 and signal["wanted"] >= 7  # the backlog may be 5 s old
    assert signal["fleet_wanted"] == signal["queued"] + signal["in_flight"] >= 7
    wanted = next(line for line in metrics(port).splitlines() if line.startswith("api_worker_slots_wanted "))
    assert float(wanted.split()[1]) >= 7


class CountingQueue:
    spec = "counting"

    def __init__(self) -> None:
        self.asked = 0
        self.failing = False

    def backlog(self) -> QueueDepth:
        self.asked += 1
        if self.failing:
            raise QueueError("get_queue_attributes on counting failed", operation="get_queue_attributes")
        return QueueDepth(3, 1)


def test_the_backlog_is_asked_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    queue = CountingQueue()
    backlog = CachedBacklog(queue, max_age_s=60)  # type: ignore[arg-type]
    assert [backlog() for _ in range(5)] == [QueueDepth(3, 1)] * 5 and queue.asked == 1
    queue.failing, backlog.max_age_s = True, 0
    assert [backlog() for _ in range(3)] == [None] * 3 and queue.asked == 4
    assert sum("backlog is unknown" in record.message for record in caplog.records) == 1  # told once


def test_the_embedded_queue_counts_only_what_is_visible(tmp_path: Path) -> None:
    from queues.local import LocalQueue

    queue = LocalQueue(tmp_path / "q.sqlite3")
    queue.send_batch(["a", "b", "c"])
    queue.receive(1, 0, 60)
    assert queue.backlog() == QueueDepth(visible=2, in_flight=1)


@pytest.mark.integration
def test_an_sqs_queue_says_its_visible_backlog(sqs: Any) -> None:
    from queues.sqs import SqsQueue

    queue = SqsQueue(new_queue(sqs, "backlog"))
    queue.send_batch([OutgoingMessage(body, None) for body in ("a", "b", "c")])
    queue.receive(1, 0, 60)
    assert queue.backlog() == QueueDepth(visible=2, in_flight=1)

"""A remote queue's round trips overlap: receives while the queue has a backlog, and result
deliveries, while visibility changes keep their place in line."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pool.holding.intake import Intake
from pool.holding.prefetch import ReceiveRequest
from pool.settling.outbox import ThreadOutbox
from queues.base import QueueError, ReceivedMessage

DEADLINE_S = 10.0


class GatedQueue:
    """Each receive waits until the test lets it answer, with as many messages as it says."""

    spec = "gated"

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.asked: list[int] = []  # each receive's count, in the order they came
        self.in_flight = 0
        self.most_in_flight = 0
        self.answers: list[int | Exception] = []  # what the next receives answer, in order
        self.released: list[str] = []
        self.sequence = 0

    def receive(self, max_messages: int, wait_seconds: float, visibility_timeout: float) -> list[ReceivedMessage]:
        with self.condition:
            self.asked.append(max_messages)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.condition.notify_all()
            assert self.condition.wait_for(lambda: self.answers, timeout=DEADLINE_S)
            answer = self.answers.pop(0)
            self.in_flight -= 1
            if isinstance(answer, Exception):
                raise answer
            count = min(answer, max_messages)
            first, self.sequence = self.sequence, self.sequence + count
        return [ReceivedMessage(f"m{i}", f"r{i}", "{}", 1) for i in range(first, first + count)]

    def change_visibility(self, changes: list[object]) -> None:
        self.released += [str(change) for change in changes]

    def answer(self, *answers: int | Exception) -> None:
        with self.condition:
            self.answers += answers
            self.condition.notify_all()

    def more_receives_than(self, count: int, within_s: float) -> bool:
        with self.condition:
            return self.condition.wait_for(lambda: len(self.asked) > count, timeout=within_s)

    def wait_for_receives(self, count: int) -> None:
        with self.condition:
            assert self.condition.wait_for(lambda: len(self.asked) >= count, timeout=DEADLINE_S), self.asked


@pytest.fixture
def queue() -> GatedQueue:
    return GatedQueue()


@pytest.fixture
def intake(queue: GatedQueue) -> Iterator[Intake]:
    receiving = Intake(queue, visibility_timeout=60, wait_seconds=20, wake=lambda: None, receives_in_flight=3)  # type: ignore[arg-type]
    receiving.start()
    yield receiving
    receiving.stop()
    queue.answer(*[0] * 10)  # let any receive still waiting return
    receiving.join(DEADLINE_S)
    assert not receiving.is_alive()


def test_receives_overlap_while_the_queue_has_a_backlog(queue: GatedQueue, intake: Intake) -> None:
    intake.offer(ReceiveRequest(for_slots=2, to_hold=38, batch=10))
    queue.wait_for_receives(1)
    assert queue.most_in_flight == 1  # nothing known of the queue yet: one receive
    queue.answer(10)  # a full batch: the queue has more
    queue.wait_for_receives(4)
    assert queue.most_in_flight == 3 and queue.asked == [10, 10, 10, 10]
    assert not queue.more_receives_than(4, within_s=0.1)  # three in flight at most
    queue.answer(10, 10, 10)
    taken: list[ReceivedMessage] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(taken) < 40 and time.monotonic() < deadline:
        taken += intake.take()
        intake.offer(ReceiveRequest(for_slots=0, to_hold=40 - len(taken), batch=10))
        time.sleep(0.01)
    assert len(taken) == 40  # all that was wanted, none beyond it
    assert len(queue.asked) == 4


def test_one_receive_at_a_time_once_the_queue_runs_short(queue: GatedQueue, intake: Intake) -> None:
    intake.offer(ReceiveRequest(for_slots=2, to_hold=38, batch=10))
    queue.wait_for_receives(1)
    queue.answer(3)  # fewer than asked: the queue is nearly empty
    queue.wait_for_receives(2)
    assert not queue.more_receives_than(2, within_s=0.1)  # the second alone
    queue.answer(3)
    queue.wait_for_receives(3)
    assert queue.most_in_flight == 1


def test_a_failed_receive_pauses_every_receiver(queue: GatedQueue, intake: Intake) -> None:
    intake.offer(ReceiveRequest(for_slots=2, to_hold=38, batch=10))
    queue.wait_for_receives(1)
    failed_at = time.monotonic()
    queue.answer(QueueError("receive_message on gated failed", operation="receive_message"))
    queue.wait_for_receives(2)
    assert time.monotonic() - failed_at >= 0.25  # the first back-off is 0.5 s, give or take
    assert queue.most_in_flight == 1


def test_messages_received_while_stopping_go_back(queue: GatedQueue, intake: Intake) -> None:
    intake.offer(ReceiveRequest(for_slots=2, to_hold=0, batch=1))
    queue.wait_for_receives(1)
    intake.stop()
    queue.answer(2)
    intake.join(DEADLINE_S)
    assert len(queue.released) == 2 and intake.take() == []


@pytest.fixture
def outbox() -> Iterator[ThreadOutbox]:
    calls = ThreadOutbox(threads=3)
    calls.start()
    yield calls
    calls.stop(timeout=DEADLINE_S)
    assert not calls.is_alive()


def test_deliveries_overlap(outbox: ThreadOutbox) -> None:
    both_running = threading.Barrier(2, timeout=DEADLINE_S)  # broken unless both wait at once
    done = threading.Semaphore(0)

    def delivery() -> None:
        both_running.wait()
        done.release()

    outbox.submit("deliver 1", delivery, float("inf"), ordered=False)
    outbox.submit("deliver 2", delivery, float("inf"), ordered=False)
    assert done.acquire(timeout=DEADLINE_S) and done.acquire(timeout=DEADLINE_S)


def test_a_visibility_change_keeps_its_place_in_line(outbox: ThreadOutbox) -> None:
    """A heartbeat waits for the deliveries before it, and deliveries after it wait for it: a
    message is never hidden again after its delete, nor deleted before an earlier change."""
    events: list[str] = []
    lock = threading.Lock()
    gate = threading.Event()
    finished = threading.Semaphore(0)

    def call(name: str, wait: bool = False) -> None:
        with lock:
            events.append(f"{name} began")
        if wait:
            assert gate.wait(DEADLINE_S)
        with lock:
            events.append(f"{name} ended")
        finished.release()

    outbox.submit("deliver 1", lambda: call("deliver 1", wait=True), float("inf"), ordered=False)
    outbox.submit("extend visibility", lambda: call("extend"), float("inf"))
    outbox.submit("deliver 2", lambda: call("deliver 2"), float("inf"), ordered=False)
    assert not finished.acquire(timeout=0.1)  # nothing ends while the first delivery is held
    assert events == ["deliver 1 began"]
    gate.set()
    for _ in range(3):
        assert finished.acquire(timeout=DEADLINE_S)
    assert events == [
        "deliver 1 began",
        "deliver 1 ended",
        "extend began",
        "extend ended",
        "deliver 2 began",
        "deliver 2 ended",
    ]


def test_a_failed_call_is_retried_on_any_thread(outbox: ThreadOutbox) -> None:
    attempts: list[int] = []
    finished = threading.Event()

    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise QueueError("delete_message_batch on gated failed", operation="delete_message_batch")
        finished.set()

    outbox.submit("deliver 1", flaky, float("inf"), ordered=False)
    assert finished.wait(DEADLINE_S)
    assert len(attempts) == 2 and outbox.pending() == 0

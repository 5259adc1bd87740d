"""Result delivery: a result that went out is never sent again when its batch is retried."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pool.courier import ResultCourier, Settlement
from pool.outbox import InlineOutbox
from queues.base import QueueError, ReceivedMessage, VisibilityChange


class FlakyQueue:
    """A queue whose first batch send delivers only its first entry (as SQS may)."""

    spec = "flaky"
    reply_address = "flaky"

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.deleted: list[str] = []
        self.failures_left = 1

    def send(self, body: str) -> str:
        return self.send_batch([body])[0]

    def send_batch(self, bodies: Sequence[str]) -> list[str]:
        if self.failures_left:
            self.failures_left -= 1
            self.sent.append(bodies[0])
            raise QueueError("send_message_batch on flaky: 1 entries failed", frozenset({0}))
        self.sent += bodies
        return [str(index) for index, _ in enumerate(bodies)]

    def receive(self, max_messages: int, wait_seconds: float, visibility_timeout: float) -> list[ReceivedMessage]:
        return []

    def delete(self, receipts: Sequence[str]) -> None:
        self.deleted += receipts

    def change_visibility(self, changes: Sequence[VisibilityChange]) -> None:
        pass

    def sibling(self, name: str) -> FlakyQueue:
        return self

    def private_reply_queue(self) -> FlakyQueue:
        return self

    def drop(self) -> None:
        pass


def test_a_partly_sent_batch_is_completed_without_duplicates() -> None:
    queue = FlakyQueue()
    courier = ResultCourier(queue, queue, InlineOutbox())
    settlements = [Settlement(ReceivedMessage(f"m{i}", f"r{i}", "{}", 1), f"result {i}", None) for i in range(3)]
    for settlement in settlements:
        courier.add(settlement)
    delivery_attempts = []

    class RetryingOutbox(InlineOutbox):
        def submit(self, name, call, deadline):  # type: ignore[no-untyped-def]
            for _ in range(2):  # the first try fails part-way; the retry completes it
                try:
                    call()
                    delivery_attempts.append("ok")
                    return
                except QueueError:
                    delivery_attempts.append("failed")

    courier.outbox = RetryingOutbox()
    courier.flush(force=True)
    assert delivery_attempts == ["failed", "ok"]
    assert queue.sent == ["result 0", "result 1", "result 2"]
    assert queue.deleted == ["r0", "r1", "r2"]


def test_nothing_is_deleted_while_its_result_is_not_out() -> None:
    queue = FlakyQueue()
    queue.failures_left = 10**6
    courier = ResultCourier(queue, queue, InlineOutbox())
    courier.add(Settlement(ReceivedMessage("m", "r", "{}", 1), "result", None))
    courier.flush(force=True)
    assert queue.deleted == []


@pytest.mark.parametrize("force", [False, True])
def test_remote_results_wait_to_share_a_call(force: bool) -> None:
    from pool.outbox import ThreadOutbox

    queue = FlakyQueue()
    queue.failures_left = 0
    outbox = ThreadOutbox()
    outbox.start()
    courier = ResultCourier(queue, queue, outbox)
    courier.add(Settlement(ReceivedMessage("m", "r", "{}", 1), "result", None))
    courier.flush(force=force)
    outbox.stop(timeout=5)
    assert queue.sent == (["result"] if force else [])
    assert courier.seconds_to_flush() == (None if force else pytest.approx(0.5, abs=0.1))

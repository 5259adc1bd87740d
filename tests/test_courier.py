"""Result delivery from the journal: a result that went out is never sent again when its batch
is retried, a message is never deleted before its result is out, and the journal is told."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from journal.base import Outcome
from journal.health import JournalHealth
from journal.sqlite import SqliteJournal
from pool.settling.courier import NEVER, Parcel, ResultCourier
from pool.settling.destinations import UNUSABLE_TTL_S, Destinations
from pool.settling.outbox import InlineOutbox, ThreadOutbox
from queues.base import (
    DeliveryProfile,
    JobQueue,
    OutgoingMessage,
    QueueDepth,
    QueueError,
    ReceivedMessage,
    Sendable,
    VisibilityChange,
    outgoing,
)


class FlakyQueue:
    """A queue whose first batch send delivers only its first entry (as SQS may)."""

    spec = "flaky"
    reply_address = "flaky"
    profile = DeliveryProfile(calls_in_loop=False, result_batch_delay_s=0.5, flush_when_idle=False, prefetch=True)

    def __init__(self, failures: int = 1) -> None:
        self.sent: list[str] = []
        self.deleted: list[str] = []
        self.failures_left = failures  # batch sends that deliver only their first entry

    def job_message(self, body: str, group: str | None, job_id: str | None) -> OutgoingMessage:
        return OutgoingMessage(body, group)

    def send(self, message: Sendable) -> str:
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[Sendable]) -> list[str]:
        bodies = [outgoing(message).body for message in messages]
        if self.failures_left:
            self.failures_left -= 1
            self.sent.append(bodies[0])
            raise QueueError("send_message_batch on flaky: 1 entries failed", frozenset({0}))
        self.sent += bodies
        return [str(index) for index, _ in enumerate(bodies)]

    def receive(self, max_messages: int, wait_seconds: float, visibility_timeout: float) -> list[ReceivedMessage]:
        return []

    def backlog(self) -> QueueDepth:
        return QueueDepth(0, 0)

    def listen(self) -> None:
        return None

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

    def attempts_limit(self, default: int) -> int:
        return default

    def settle(
        self,
        sends: Sequence[tuple[JobQueue, Sequence[Sendable]]],
        deletes: Sequence[str],
        retries: Sequence[VisibilityChange],
    ) -> bool:
        return False


class NoDeletes(FlakyQueue):
    """A queue whose deletes are refused."""

    def delete(self, receipts: Sequence[str]) -> None:
        raise QueueError("delete_message_batch on flaky: receipt handle is invalid")


def _courier(queue: FlakyQueue, journal: SqliteJournal, outbox: InlineOutbox | ThreadOutbox) -> ResultCourier:
    return ResultCourier(
        queue, Destinations(queue, queue), outbox, journal=journal, health=JournalHealth(journal.location)
    )


def _parcels(journal: SqliteJournal, count: int) -> list[Parcel]:
    outcomes = [Outcome(f"m{i}", f"m{i}", 1, "succeeded", True, f"r{i}", f"result {i}") for i in range(count)]
    journal.record(outcomes)
    return [Parcel(outcome.receipt, NEVER, outcome) for outcome in outcomes]


def _courier_holding(queue: FlakyQueue, tmp_path: Path, count: int) -> tuple[ResultCourier, SqliteJournal]:
    """A courier that delivers through `queue` in the caller's thread, holding `count`
    journaled parcels; and its journal."""
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    courier = _courier(queue, journal, InlineOutbox())
    for parcel in _parcels(journal, count):
        courier.add(parcel)
    return courier, journal


def test_a_partly_sent_batch_is_completed_without_duplicates(tmp_path: Path) -> None:
    queue = FlakyQueue()
    courier, journal = _courier_holding(queue, tmp_path, 3)
    delivery_attempts = []

    class RetryingOutbox(InlineOutbox):
        def submit(self, name, call, deadline, *, ordered=True):  # type: ignore[no-untyped-def]
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
    assert journal.unsettled() == []
    assert all(job.delivered for job in journal.finished(["m0", "m1", "m2"]).values())


def test_nothing_is_deleted_while_its_result_is_not_out(tmp_path: Path) -> None:
    queue = FlakyQueue(failures=10**6)
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    outbox = InlineOutbox()
    courier = _courier(queue, journal, outbox)
    courier.add(_parcels(journal, 1)[0])
    courier.flush(force=True)
    assert queue.deleted == []
    assert outbox.pending() == 1  # retried later, never given up
    assert [o.message_id for o in journal.unsettled()] == ["m0"]


def test_results_out_and_a_delete_refused_are_journaled_as_sent(tmp_path: Path) -> None:
    queue = NoDeletes(failures=0)
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    outbox = InlineOutbox()
    courier = _courier(queue, journal, outbox)
    courier.add(_parcels(journal, 1)[0])
    courier.flush(force=True)
    assert queue.sent == ["result 0"]
    assert outbox.pending() == 1  # the delete is retried
    [unsettled] = journal.unsettled()
    assert unsettled.result_json == ""  # sent: a restart deletes it without sending its result again


def test_a_delivery_that_goes_through_leaves_nothing_unsettled(tmp_path: Path) -> None:
    queue = FlakyQueue(failures=0)
    courier, journal = _courier_holding(queue, tmp_path, 3)
    courier.flush(force=True)
    assert queue.deleted == ["r0", "r1", "r2"]
    assert journal.unsettled() == []


@pytest.mark.parametrize("force", [False, True])
def test_remote_results_wait_to_share_a_call(force: bool, tmp_path: Path) -> None:
    queue = FlakyQueue(failures=0)
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    outbox = ThreadOutbox()
    outbox.start()
    courier = _courier(queue, journal, outbox)
    courier.add(_parcels(journal, 1)[0])
    courier.flush(force=force)
    outbox.stop(timeout=5)
    assert queue.sent == (["result 0"] if force else [])
    assert courier.seconds_to_flush() == (None if force else pytest.approx(0.5, abs=0.1))


def test_a_full_batch_goes_out_alone_and_the_rest_waits_for_its_own(tmp_path: Path) -> None:
    queue = FlakyQueue(failures=0)
    courier, _ = _courier_holding(queue, tmp_path, 13)
    courier.flush()
    assert queue.sent == [f"result {i}" for i in range(10)]  # one full batch: one call
    assert courier.pending_count() == 3
    assert courier.seconds_to_flush() == pytest.approx(0.5, abs=0.1)  # the rest waits its delay
    courier.flush(force=True)
    assert queue.sent == [f"result {i}" for i in range(13)]
    assert courier.pending_count() == 0


def test_a_duplicate_delivery_is_only_deleted(tmp_path: Path) -> None:
    queue = FlakyQueue()
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    courier = _courier(queue, journal, InlineOutbox())
    courier.add(Parcel("new receipt", NEVER))
    courier.flush(force=True)
    assert (queue.sent, queue.deleted) == ([], ["new receipt"])


def test_a_delete_given_up_after_the_visibility_lapsed_still_settles_the_journal(tmp_path: Path) -> None:
    queue = NoDeletes(failures=0)
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    courier = _courier(queue, journal, InlineOutbox())
    parcel = _parcels(journal, 1)[0]
    parcel.give_up_at = 0.0  # its receipt is dead: the message comes back and the journal answers it
    courier.add(parcel)
    courier.flush(force=True)
    assert queue.sent == ["result 0"]
    assert journal.unsettled() == []
    assert journal.finished(["m0"])["m0"].delivered


def test_reply_queues_are_looked_up_once_and_unusable_ones_fall_back_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Lookups(FlakyQueue):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[str] = []

        def sibling(self, name: str) -> FlakyQueue:
            self.asked.append(name)
            if name == "gone":
                raise ValueError("there is no SQS queue named 'gone'")
            return FlakyQueue()

    jobs, results = Lookups(), FlakyQueue()
    destinations = Destinations(jobs, results)
    replies = destinations.resolve("replies")
    assert destinations.resolve("replies") is replies and destinations.resolve(None) is results
    assert destinations.resolve("gone") is results and destinations.resolve("gone") is results
    assert jobs.asked == ["replies", "gone"]  # each asked once; the failure is remembered too
    later = time.monotonic() + UNUSABLE_TTL_S + 1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert destinations.resolve("gone") is results
    assert jobs.asked == ["replies", "gone", "gone"]  # asked again once the failure is old

"""Delivers outcomes from the journal: results, dead-letter copies, then deletes or retries.

An outcome is in the journal before the courier sees it (unless the journal cannot be
written: then it is delivered all the same). Its result is sent until it goes out, however
long the queue is down; then its message is deleted (or hidden for a retry) and the outcome
marked settled, in one journal write. Only when the delete fails is the outcome marked sent
first, so that the retry (after a restart too) never sends its result again. A delete that
fails once the message's visibility has lapsed is given up: the message comes back and the
journal answers it without a rerun.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from common.clock import SYSTEM_CLOCK, Clock
from journal.base import JobJournal, JournalError, Outcome
from journal.health import JournalHealth
from pool.outcomes import JobEventMessage
from pool.settling.destinations import Destinations
from pool.settling.outbox import Outbox
from queues.base import BATCH_MAX, JobQueue, OutgoingMessage, QueueError, VisibilityChange

log = logging.getLogger(__name__)
NEVER = float("inf")


@dataclass(eq=False)
class Parcel:
    """What is left to do for one received message."""

    receipt: str
    give_up_at: float  # monotonic time its receipt's visibility lapses: then deleting it no longer matters
    outcome: Outcome | None = None  # None: a duplicate delivery, only to be deleted (or an event)
    journaled: bool = True
    sent: bool = False  # its result went out
    dead_lettered: bool = False
    event: JobEventMessage | None = None  # a running job's event: sent, nothing settled

    @classmethod
    def of_event(cls, event: JobEventMessage) -> Parcel:
        """A job's non-final message: sent like a result, with no message to settle and nothing
        to journal."""
        return cls("", NEVER, journaled=False, event=event)

    @property
    def deletes(self) -> bool:
        return self.event is None and (self.outcome is None or self.outcome.retry_in_s is None)

    @property
    def reply_to(self) -> str | None:
        source = self.event or self.outcome
        return None if source is None else source.reply_to

    def message(self) -> OutgoingMessage | None:
        """What it sends to its destination: the job's event or its result, in its request's
        group, under one deduplication id per attempt and event (resent, it is the same
        message); None when there is nothing (left) to send."""
        if self.event is not None:
            return OutgoingMessage(self.event.body, self.event.group_id, self.event.deduplication_id)
        if self.outcome is None or not self.outcome.result_json:  # a duplicate, or sent before a restart
            return None
        return OutgoingMessage(self.outcome.result_json, self.outcome.group_id, self.outcome.deduplication_id)


class _Delivery:
    """One batch of parcels, retried as a whole by the outbox; a step that went through is
    never repeated."""

    def __init__(self, courier: ResultCourier, parcels: list[Parcel]) -> None:
        self.courier = courier
        self.parcels = parcels
        self.began = False

    def __call__(self) -> None:
        if not self.began:
            self.began = True
            if self._settle_at_once():
                return
        self._send_results()
        self._send_dead_letters()
        try:
            self._settle_messages()
        except BaseException:
            # Retried later, perhaps after a restart: the journal must know the results went out.
            self._mark("sent", [p for p in self.parcels if p.outcome is not None])
            raise

    def _results_by_destination(self) -> dict[int, tuple[JobQueue | None, list[Parcel]]]:
        groups: dict[int, tuple[JobQueue | None, list[Parcel]]] = {}
        for parcel in self.parcels:
            if parcel.sent:
                continue
            if parcel.message() is None:
                parcel.sent = True
                continue
            queue = self.courier.destinations.resolve(parcel.reply_to)
            groups.setdefault(id(queue), (queue, []))[1].append(parcel)
        return groups

    def _dead_letters(self) -> list[Parcel]:
        return [p for p in self.parcels if p.outcome and p.outcome.dead_letter_body is not None and not p.dead_lettered]

    def _settle_at_once(self) -> bool:
        """Send and delete in one call where the queue can (the embedded queue: one transaction)."""
        job_queue = self.courier.job_queue
        sends = [
            (queue, [_result(p) for p in group])
            for queue, group in self._results_by_destination().values()
            if queue is not None
        ]
        dead = self._dead_letters()
        if dead:
            if self.courier.dead_letter_queue is None:
                return False
            sends.append((self.courier.dead_letter_queue, [_dead_letter(p) for p in dead]))
        settled = job_queue.settle(sends, *self._deletes_and_retries())
        if settled:
            self._mark("settled", self.parcels)
        return settled

    def _send_results(self) -> None:
        for queue, group in self._results_by_destination().values():
            if queue is None:  # no result queue: the log is the only record
                for parcel in group:
                    parcel.sent = True
            else:
                _send(queue, group, _result, "sent")

    def _send_dead_letters(self) -> None:
        dead = self._dead_letters()
        queue = self.courier.dead_letter_queue
        if dead and queue is not None:
            _send(queue, dead, _dead_letter, "dead_lettered")

    def _deletes_and_retries(self) -> tuple[list[str], list[VisibilityChange]]:
        deletes = [p.receipt for p in self.parcels if p.deletes and p.receipt]
        retries = [
            VisibilityChange(p.receipt, p.outcome.retry_in_s)
            for p in self.parcels
            if p.outcome is not None and p.outcome.retry_in_s is not None and p.receipt
        ]
        return deletes, retries

    def _settle_messages(self) -> None:
        deletes, retries = self._deletes_and_retries()
        job_queue = self.courier.job_queue
        try:
            job_queue.delete(deletes)
            job_queue.change_visibility(retries)
        except QueueError as exc:
            if self.courier.clock.monotonic() < min(p.give_up_at for p in self.parcels):
                raise
            log.warning(
                "messages not settled before their visibility lapsed; the journal answers them when they come back",
                extra={"count": len(self.parcels), "error": str(exc)},
            )
        self._mark("settled", self.parcels)

    def _mark(self, step: str, parcels: list[Parcel]) -> None:
        keys = [p.outcome.key for p in parcels if p.outcome is not None and p.journaled]
        if not keys:
            return
        journal = self.courier.journal
        try:
            journal.mark_settled(keys) if step == "settled" else journal.mark_sent(keys)
        except JournalError as exc:
            self.courier.health.failed(str(exc), f"{len(keys)} outcomes may be delivered again after a restart")
            return
        self.courier.health.succeeded()


def _result(parcel: Parcel) -> OutgoingMessage:
    message = parcel.message()
    assert message is not None
    return message


def _dead_letter(parcel: Parcel) -> OutgoingMessage:
    outcome = parcel.outcome
    assert outcome is not None
    return OutgoingMessage(outcome.dead_letter_body or "", outcome.group_id, outcome.deduplication_id)


def _send(queue: JobQueue, parcels: list[Parcel], message: Callable[[Parcel], OutgoingMessage], done_flag: str) -> None:
    """Send one message per parcel in batch calls, setting `done_flag` on each parcel that went
    out, also when the call failed part-way (so a retry sends only the others)."""
    try:
        queue.send_batch([message(parcel) for parcel in parcels])
    except QueueError as exc:
        for index in exc.done:
            setattr(parcels[index], done_flag, True)
        raise
    for parcel in parcels:
        setattr(parcel, done_flag, True)


class ResultCourier:
    def __init__(
        self,
        job_queue: JobQueue,
        destinations: Destinations,
        outbox: Outbox,
        *,
        journal: JobJournal,
        health: JournalHealth,
        dead_letter_queue: JobQueue | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.clock = clock
        self.job_queue = job_queue
        self.destinations = destinations
        self.outbox = outbox
        self.journal = journal
        self.health = health
        self.dead_letter_queue = dead_letter_queue
        self._pending: list[Parcel] = []
        self._added: list[float] = []  # when each pending parcel came (monotonic)
        self._batch_delay_s = job_queue.profile.result_batch_delay_s

    def add(self, parcel: Parcel) -> None:
        self._pending.append(parcel)
        self._added.append(self.clock.monotonic())

    def pending_count(self) -> int:
        """Messages answered whose answer waits for its batch to go out (events not counted)."""
        return sum(1 for parcel in self._pending if parcel.event is None)

    def seconds_to_flush(self) -> float | None:
        """When the pending parcels must go out (None: nothing pending)."""
        if not self._pending:
            return None
        return max(0.0, self._added[0] + self._batch_delay_s - self.clock.monotonic())

    def next_due(self) -> float | None:
        """When the pending parcels must go out (monotonic; None: nothing pending)."""
        return self._added[0] + self._batch_delay_s if self._pending else None

    def flush(self, *, force: bool = False) -> None:
        """Hand what is pending to the outbox, once a batch is full or has waited its delay (or
        when forced), so that a busy worker makes one call per ten results on a remote queue,
        and one transaction for several on the embedded queue. A full batch goes out alone: the
        rest waits for its own batch to fill, or for its delay."""
        due = self.seconds_to_flush()
        if due is None:
            return
        everything = force or due <= 0
        if not everything and len(self._pending) < BATCH_MAX:
            return
        count = len(self._pending) if everything else len(self._pending) // BATCH_MAX * BATCH_MAX
        pending, self._pending = self._pending[:count], self._pending[count:]
        del self._added[:count]
        for start in range(0, len(pending), BATCH_MAX):
            batch = pending[start : start + BATCH_MAX]
            # Batches of separate jobs' results overlap; events, and results in a message group,
            # keep their order behind what went before.
            ordered = any(p.event is not None or (p.outcome is not None and p.outcome.group_id) for p in batch)
            self.outbox.submit(f"deliver {len(batch)} outcomes", _Delivery(self, batch), NEVER, ordered=ordered)

"""The supervisor's side of the journal: outcomes written before they are handed to the
courier, finished jobs recognised when their messages come back, and what a previous run
left undelivered sent again at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from common.clock import SYSTEM_CLOCK, Clock
from common.thread_health import GuardedThread
from journal.base import JobJournal, JournalError, Outcome
from journal.health import JournalHealth
from journal.job_table import StoredResult
from journal.pruner import JournalPruner
from monitoring.metrics import record_duplicate_delivery, record_thread_failure
from pool.settling.courier import Parcel, ResultCourier
from queues.base import ReceivedMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resend:
    """A finished job's result as the job table keeps it, and where the request wants it."""

    result: StoredResult
    reply_to: str | None


class Ledger:
    def __init__(
        self,
        journal: JobJournal,
        health: JournalHealth,
        courier: ResultCourier,
        *,
        retention_s: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.clock = clock
        self.journal = journal
        self.health = health
        self.courier = courier
        self.pruner = JournalPruner(journal, retention_s, health)
        self._pruner_thread = GuardedThread(
            "journal-pruner", self.pruner.prune_once, self.pruner.interval_s, record_thread_failure
        )
        self._finished: list[tuple[Outcome, float]] = []  # to record, with their receipts' visibility end

    def start(self) -> None:
        self.resume()
        self._pruner_thread.start()

    def stop(self) -> None:
        self.record()
        self.pruner.stop()
        self._pruner_thread.stop()

    def problem(self) -> str | None:
        """The pruner thread's, if it is failing or dead."""
        return self._pruner_thread.problem()

    def add(self, outcome: Outcome, visible_until: float) -> None:
        self._finished.append((outcome, visible_until))

    def next_due(self) -> float | None:
        """Outcomes to record are due at once."""
        return self.clock.monotonic() if self._finished else None

    def record(self) -> None:
        """Outcomes go into the journal, in one transaction, before anything of them is sent;
        if the journal cannot take them, they are delivered all the same."""
        if not self._finished:
            return
        finished, self._finished = self._finished, []
        journaled = True
        try:
            self.journal.record([outcome for outcome, _ in finished])
            self.health.succeeded()
        except JournalError as exc:
            journaled = False
            self.health.failed(str(exc), f"{len(finished)} outcomes delivered without a journal entry")
        for outcome, visible_until in finished:
            self.courier.add(Parcel(outcome.receipt, visible_until, outcome, journaled))

    def resume(self) -> None:
        """What a previous run left undelivered goes out before new work comes in. Its receipts
        may be dead: a delete is tried once, and the message, should it come back, is
        answered from the journal."""
        try:
            left = self.journal.unsettled()
        except JournalError as exc:
            self.health.failed(str(exc), "outcomes left by the previous run are not delivered")
            return
        if not left:
            return
        unsent = sum(1 for outcome in left if outcome.result_json)
        log.info("delivering what the previous run left", extra={"outcomes": len(left), "unsent_results": unsent})
        now = self.clock.monotonic()
        for outcome in left:
            self.courier.add(Parcel(outcome.receipt, now, outcome))
        self.courier.flush(force=True)

    def answer_finished(self, messages: list[ReceivedMessage], visible_until: float) -> list[ReceivedMessage]:
        """The messages whose jobs are not finished. Those the journal has as finished (looked
        up once, all together) are answered from it and deleted, never run again."""
        try:
            finished = self.journal.finished([message.message_id for message in messages])
        except JournalError as exc:
            self.health.failed(str(exc), "received messages are run without a journal check")
            return messages
        for message in messages:
            done = finished.get(message.message_id)
            if done is not None:
                self.answer_duplicate(message, done.job_id, done.status, done.message_id, visible_until)
        return [message for message in messages if message.message_id not in finished]

    def answer_duplicate(
        self,
        message: ReceivedMessage,
        job_id: str,
        status: str,
        finished_as: str,
        visible_until: float,
        *,
        stored: Resend | None = None,
    ) -> None:
        """A message whose job is finished: deleted, never run again. The result the job table
        keeps (`stored`) is sent again first, journaled like an outcome of this worker's (the
        result queue may see it twice, never zero times); the journal's own stored result goes
        out from the journal if it has not yet."""
        log.info(
            "duplicate delivery of a finished job",
            extra={
                "job_id": job_id,
                "message_id": message.message_id,
                "attempt": message.receive_count,
                "status": status,
                "finished_as": finished_as,
                "result_sent_again": stored is not None,
            },
        )
        record_duplicate_delivery()
        if stored is None:
            self.courier.add(Parcel(message.receipt, visible_until))
            return
        result = stored.result
        outcome = Outcome(
            result.message_id,
            job_id,
            result.attempt,
            status,
            True,
            message.receipt,
            result.result_json,
            stored.reply_to,
            group_id=message.group_id,
        )
        self.add(outcome, visible_until)

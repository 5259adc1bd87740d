"""The one owner of job outcomes: how a result is built, whether it is final, when a job is
retried and what goes to the dead-letter queue, for jobs that finished and for jobs whose
child died under them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from journal.base import Outcome
from pool.notice_board import JobAccepted
from pool.wire import JobEventNote, JobReport
from protocol.body import Envelope
from protocol.result import ErrorInfo, JobResult, Status, WorkerIdentity, utc_timestamp
from queues.base import ReceivedMessage

MAX_RETRY_DELAY_S = 900.0


@dataclass(frozen=True)
class OutcomePolicy:
    max_attempts: int  # the attempt after which a system error is final
    retry_delay_s: float  # before the second attempt; doubles with each further one
    dead_letter: bool  # a dead-letter queue is configured
    instance: str | None = None  # the worker's instance name, for the results it writes itself

    def is_final(self, status: Status, retryable: bool, attempt: int) -> bool:
        """Only a system error is ever retried, and only while attempts remain."""
        return status != Status.ERROR or not retryable or attempt >= self.max_attempts

    def retry_delay(self, attempt: int) -> float:
        return min(MAX_RETRY_DELAY_S, self.retry_delay_s * 2.0 ** (attempt - 1))

    def of_report(self, message: ReceivedMessage, report: JobReport) -> tuple[Outcome, JobResult]:
        """The outcome of a job its child finished and reported."""
        return self._decide(message, report.result, report.retryable, report.reply_to)

    def of_lost_job(
        self, message: ReceivedMessage, accepted: JobAccepted | None, why: str
    ) -> tuple[Outcome, JobResult]:
        """A job whose child died: retried at once, until a message that keeps killing
        children (a fault of ours it triggers) is given up on its last attempt and
        dead-lettered. `accepted`: what the child said of the job before it died, if anything."""
        attempt = message.receive_count
        if attempt >= self.max_attempts:
            why += f"; attempt {attempt} of {self.max_attempts}: given up"
        result = new_result(message.message_id, attempt, WorkerIdentity.of_this_host(os.getpid(), self.instance))
        result.id = accepted.job_id if accepted else message.message_id
        result.service = accepted.service if accepted else None
        result.finished_at = result.started_at
        result.error = ErrorInfo("worker", why)
        return self._decide(message, result, True, accepted.reply_to if accepted else None, lost=True)

    def decided_here(
        self, message: ReceivedMessage, envelope: Envelope, status: Status, error: ErrorInfo
    ) -> tuple[Outcome, JobResult]:
        """A final outcome the supervisor gives a job without running it (one no box of the
        fleet can run, or one that waited too long for a box that can)."""
        result = new_result(
            message.message_id, message.receive_count, WorkerIdentity.of_this_host(os.getpid(), self.instance)
        )
        result.id, result.service, result.queue = envelope.id or message.message_id, envelope.service, envelope.queue
        result.status, result.error, result.finished_at = status, error, result.started_at
        return self._decide(message, result, False, envelope.reply_to)

    def _decide(
        self,
        message: ReceivedMessage,
        result: JobResult,
        retryable: bool,
        reply_to: str | None,
        *,
        lost: bool = False,
    ) -> tuple[Outcome, JobResult]:
        """Final or retried, after what delay, dead-lettered or not; the result serialized once.
        A rejected message is dead-lettered, and so is one that kept killing children (`lost`)
        on its last attempt; a lost job is retried at once, another error after a backoff."""
        attempt = message.receive_count
        result.final = self.is_final(result.status, retryable, attempt)
        dead_letter = self.dead_letter and (result.status == Status.REJECTED or (lost and result.final))
        retry_in_s = 0.0 if lost else self.retry_delay(attempt)
        outcome = Outcome(
            message_id=message.message_id,
            job_id=result.id,
            attempt=attempt,
            status=str(result.status),
            final=result.final,
            receipt=message.receipt,
            result_json=result.to_json(),
            reply_to=reply_to,
            dead_letter_body=message.body if dead_letter else None,
            retry_in_s=None if result.final else retry_in_s,
            group_id=message.group_id,
        )
        return outcome, result

    @staticmethod
    def event(message: ReceivedMessage, note: JobEventNote) -> JobEventMessage:
        """A running job's event: not an outcome of the attempt, only sent where its result goes."""
        return JobEventMessage(
            message.message_id, message.receive_count, note.body, note.reply_to, message.group_id, note.sequence
        )


@dataclass(frozen=True)
class JobEventMessage:
    """A non-final message about a running job, sent with the results to its result's
    destination and in its request's group; nothing of it is journaled or settled."""

    message_id: str
    attempt: int
    body: str
    reply_to: str | None
    group_id: str | None
    sequence: int  # per job, from 1

    @property
    def deduplication_id(self) -> str:
        """Never the result's own (`MESSAGE_ID:ATTEMPT`): SQS would drop the later one."""
        return f"{self.message_id}:{self.attempt}:event-{self.sequence}"


def new_result(message_id: str, attempt: int, worker: WorkerIdentity, started: datetime | None = None) -> JobResult:
    """A result as a job begins: a system error until the job says otherwise."""
    return JobResult(
        id=message_id,
        message_id=message_id,
        status=Status.ERROR,
        worker=worker,
        attempt=attempt,
        started_at=utc_timestamp(started),
    )

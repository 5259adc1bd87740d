"""The one owner of job outcomes: how a result is built, whether it is final, when a job is
retried and what goes to the dead-letter queue, for jobs that finished and for jobs whose
child died under them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from journal.base import Outcome
from pool.assignment import JobEventNote, JobReport
from pool.notice import JobAccepted
from protocol.result import ErrorInfo, JobResult, Status, WorkerIdentity, utc_timestamp
from queues.base import ReceivedMessage

MAX_RETRY_DELAY_S = 900.0


@dataclass(frozen=True)
class OutcomePolicy:
    max_attempts: int  # the attempt after which a system error is final
    retry_delay_s: float  # before the second attempt; doubles with each further one
    dead_letter: bool  # a dead-letter queue is configured

    def is_final(self, status: Status, retryable: bool, attempt: int) -> bool:
        """Only a system error is ever retried, and only while attempts remain."""
        return status != Status.ERROR or not retryable or attempt >= self.max_attempts

    def retry_delay(self, attempt: int) -> float:
        return min(MAX_RETRY_DELAY_S, self.retry_delay_s * 2.0 ** (attempt - 1))

    def of_report(self, message: ReceivedMessage, report: JobReport) -> Outcome:
        """The outcome of a job its child finished and reported."""
        return Outcome(
            message_id=message.message_id,
            job_id=report.job_id,
            attempt=message.receive_count,
            status=report.status,
            final=report.final,
            receipt=message.receipt,
            result_json=report.result_json,
            reply_to=report.reply_to,
            dead_letter_body=message.body if report.status == Status.REJECTED and self.dead_letter else None,
            retry_in_s=None if report.final else self.retry_delay(message.receive_count),
            group_id=message.group_id,
        )

    def of_event(self, message: ReceivedMessage, note: JobEventNote) -> Outcome:
        """A running job's event: not an outcome of the attempt, only sent where its result goes."""
        return Outcome(
            message_id=message.message_id,
            job_id=message.message_id,
            attempt=message.receive_count,
            status="event",
            final=False,
            receipt="",
            result_json=note.body,
            reply_to=note.reply_to,
            group_id=message.group_id,
        )

    def of_lost_job(
        self, message: ReceivedMessage, accepted: JobAccepted | None, why: str
    ) -> tuple[Outcome, JobResult]:
        """A job whose child died: retried at once, until a message that keeps killing
        children (a fault of ours it triggers) is given up on its last attempt and
        dead-lettered. `accepted`: what the child said of the job before it died, if anything."""
        attempt = message.receive_count
        final = attempt >= self.max_attempts
        if final:
            why += f"; attempt {attempt} of {self.max_attempts}: given up"
        result = new_result(message.message_id, attempt, WorkerIdentity.of_this_host(os.getpid()))
        result.id = accepted.job_id if accepted else message.message_id
        result.service = accepted.service if accepted else None
        result.finished_at = result.started_at
        result.error = ErrorInfo("worker", why)
        result.final = final
        outcome = Outcome(
            message_id=message.message_id,
            job_id=result.id,
            attempt=attempt,
            status=Status.ERROR,
            final=final,
            receipt=message.receipt,
            result_json=result.to_json(),
            reply_to=accepted.reply_to if accepted else None,
            dead_letter_body=message.body if final and self.dead_letter else None,
            retry_in_s=None if final else 0.0,
            group_id=message.group_id,
        )
        return outcome, result


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

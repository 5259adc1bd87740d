"""One attempt at a job in a pool child: everything that belongs to it alone, from its
assignment to its report. The executor keeps only what outlives a job (runners, stager, gate)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from journal.job_table import Claim
from pool.child.gate import FinishedElsewhere, HeldElsewhere
from pool.wire import AnyReport, DuplicateReport, HeldElsewhereReport, JobAssignment, JobReport
from protocol.body import DecodedBody
from protocol.result import JobResult, utc_timestamp
from staging.stager import StagedJob

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    assignment: JobAssignment
    decoded: DecodedBody  # the one decode of its body
    result: JobResult  # filled in as the attempt goes
    reply_to: str | None  # the request's reply queue, if it named a usable one
    reply_to_problem: str | None  # why the reply queue it named is not usable
    started: float  # monotonic
    claim: Claim | None = None  # in the job table, when there is one and it answered
    staged: StagedJob | None = None  # its inputs, once staged
    retryable: bool = True  # an error that another attempt may not meet

    @property
    def job_id(self) -> str:
        return self.result.id

    @property
    def message_id(self) -> str:
        return self.assignment.message_id

    def finish(self) -> None:
        self.result.finished_at = utc_timestamp()
        self.result.duration_s = round(time.monotonic() - self.started, 3)

    def report(self) -> JobReport:
        bytes_out = sum(output.bytes for output in self.result.outputs)
        bytes_in, cache = (self.staged.bytes_in, self.staged.cache) if self.staged else (0, None)
        return JobReport(
            self.result, self.retryable, self.reply_to, bytes_in=bytes_in, bytes_out=bytes_out, cache=cache
        )

    def not_run_here(self, verdict: FinishedElsewhere | HeldElsewhere) -> AnyReport:
        """The report of a job the job table says is finished, or held by another worker."""
        if isinstance(verdict, FinishedElsewhere):
            log.info("job already finished on another worker", extra={"finished_as": verdict.finished_as})
            return DuplicateReport(
                self.message_id, self.job_id, verdict.status, verdict.finished_as, verdict.result, self.reply_to
            )
        log.info(
            "job claimed by another worker; not run here",
            extra={"owner": verdict.owner, "lease_left_s": round(verdict.lease_left_s, 1)},
        )
        return HeldElsewhereReport(self.message_id, self.job_id, verdict.owner, verdict.lease_left_s)

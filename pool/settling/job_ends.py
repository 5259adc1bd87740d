"""What a job's end means for the messages this worker holds: a report or a child dead under
its job becomes an outcome (journaled, then delivered), a duplicate is deleted, a job another
worker holds is hidden until that worker's lease ends, and a stale attempt publishes nothing."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from journal.base import Outcome
from monitoring.metrics import record_dead_letter, record_input_cache, record_job, service_label
from pool.holding.custody import Custody, Running
from pool.holding.prefetch import Prefetch
from pool.outcomes import OutcomePolicy
from pool.settling.job_history import JobHistory
from pool.settling.ledger import Ledger, Resend
from pool.slots import LostJob, Slot
from pool.upkeep.image_cache import ImageCache
from pool.wire import AnyReport, DuplicateReport, HeldElsewhereReport, StaleReport

log = logging.getLogger(__name__)
HIDE_MARGIN_S = 1.0  # beyond another worker's lease: its renewal or its outcome is in by then


@dataclass(frozen=True)
class JobEnds:
    custody: Custody
    ledger: Ledger
    policy: OutcomePolicy
    prefetch: Prefetch
    images: ImageCache | None  # told of each docker job's image, when there is a cache
    known_services: frozenset[str]
    history: JobHistory

    def reported(self, slot: Slot, job: Running, report: AnyReport) -> None:
        self.custody.finish(job)
        self.prefetch.job_ended(self.custody.clock.monotonic() - job.started)
        if isinstance(report, DuplicateReport):
            resend = None if report.stored is None else Resend(report.stored, report.reply_to)
            self.ledger.answer_duplicate(
                job.message, report.job_id, report.status, report.finished_as, job.visible_until, stored=resend
            )
        elif isinstance(report, HeldElsewhereReport):
            # Back on the queue once that worker's lease ends: then it has finished, or lapsed.
            hidden_s = report.lease_left_s + HIDE_MARGIN_S
            self.custody.release(
                [job.message],
                f"claimed by {report.owner} in the job table",
                after_s=hidden_s,
                reason="claimed-elsewhere",
            )
        elif isinstance(report, StaleReport):
            log.warning(
                "the job's claim went to another worker while it ran here: nothing of it is published",
                extra={**job.log_fields(report.job_id), "fence": report.fence},
            )
        else:
            outcome, result = self.policy.of_report(job.message, report)
            log.info("job finished", extra={"slot": slot.index, **result.summary()})
            if self.images is not None:
                self.images.job_ended(result)
            service = service_label(result.service, result.queue, self.known_services)
            record_job(outcome.status, result.duration_s or 0.0, report.bytes_in, report.bytes_out, service)
            if report.cache is not None:
                record_input_cache(**asdict(report.cache))
            self.history.add(result, outcome.final)
            self._settle(job, outcome)

    def lost(self, lost: LostJob) -> None:
        self.custody.finish(lost.job)
        outcome, result = self.policy.of_lost_job(lost.job.message, lost.accepted, lost.why)
        log.info("job lost", extra=result.summary())
        kind = lost.accepted.queue if lost.accepted else None
        record_job(outcome.status, 0.0, 0, 0, service_label(result.service, kind, self.known_services))
        self.history.add(result, outcome.final)
        self._settle(lost.job, outcome)

    def _settle(self, job: Running, outcome: Outcome) -> None:
        """Journaled, then delivered; a retried job of a group keeps its group's order."""
        self.ledger.add(outcome, job.visible_until)
        self.custody.keep_group_order(job.message, outcome.final)
        if outcome.dead_letter_body is not None:
            record_dead_letter()

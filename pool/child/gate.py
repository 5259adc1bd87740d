"""What may keep a job from running, or its outcome from being published, besides its own
limits: a cancel request by its id, and, with the shared job table, another worker's claim.

Without a table, a job is checked against the cancel requests once before it runs. With one,
the check is the claim itself (one conditional write), the claim's lease is renewed while the
job runs, checked again before outputs are uploaded, and the outcome stored under the claim's
fence: a worker whose fence is no longer current publishes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from common import faults
from journal.job_table import Claim, JobTable, Refusal, StoredResult, TableUnreachable
from protocol.cancel import CancelMarks, CancelRequest, CancelUnavailable
from runners.process import JobLink

log = logging.getLogger(__name__)
KEEPER_JOIN_S = 5.0
RENEWAL_STALL_FAULT_S = 15.0  # the "lease-renewal" fault: a renewal that hangs this long


@dataclass(frozen=True)
class GateSettings:
    marks: CancelMarks | None  # where cancel requests are kept (the job table, if there is one)
    table: JobTable | None  # the shared job table
    lease_s: float = 120.0  # how long a claim holds without renewal
    renew_every_s: float = 30.0
    retention_s: float = 4 * 86400.0  # how long the table keeps a finished job


@dataclass(frozen=True)
class Go:
    claim: Claim | None  # None: no table, or the table could not be asked


@dataclass(frozen=True)
class Canceled:
    cancel: CancelRequest
    claim: Claim | None = None  # with a job table: its canceled outcome is stored under it


@dataclass(frozen=True)
class FinishedElsewhere:
    status: str
    finished_as: str  # the message it finished under
    result: StoredResult | None = None  # its final result, to send again (None: the table keeps none)


@dataclass(frozen=True)
class HeldElsewhere:
    owner: str
    lease_left_s: float


Verdict = Go | Canceled | FinishedElsewhere | HeldElsewhere
NO_GATE = GateSettings(None, None)


class LeaseLink(Protocol):
    def on_claim_lost(self) -> Callable[[], None]:
        """What stops the job running now, and only that job, once its claim is another
        worker's (called from the lease keeper's thread)."""


class RunningJobLink(JobLink, LeaseLink, Protocol):
    """What a child's running job is linked to: the supervisor, and the lease keeper."""


class ClaimLost(Exception):
    """Another worker holds the job's claim now: this attempt publishes nothing."""


def owner_name(instance: str, supervisor_pid: int) -> str:
    return f"{socket.gethostname()}/{instance}/{supervisor_pid}/{os.getpid()}"


class JobGate:
    def __init__(self, settings: GateSettings, owner: str, on_table: Callable[[str | None], None]) -> None:
        """`on_table`: told the table's problem when it cannot be asked, None when it can again."""
        self.settings = settings
        self.owner = owner
        self._on_table = on_table
        self._table_problem: str | None = None
        self._confirmed_at = 0.0  # monotonic: when the table last granted or renewed this child's claim

    def admit(self, job_id: str, message_id: str) -> Verdict:
        """Whether the job may run here now: one read of the cancel requests, or one claim."""
        table = self.settings.table
        if table is not None:
            try:
                found = table.claim(job_id, message_id, self.owner, self.settings.lease_s)
            except TableUnreachable as exc:
                self._table_failed(exc, "running the job without a claim (the journal still keeps it once here)")
                return Go(None)
            self._table_answered()
            self._confirmed_at = time.monotonic()
            return _verdict(found)
        cancel = self.cancel_of(job_id)
        return Go(None) if cancel is None else Canceled(cancel)

    def cancel_of(self, job_id: str) -> CancelRequest | None:
        if self.settings.marks is None:
            return None
        try:
            return self.settings.marks.requested([job_id]).get(job_id)
        except CancelUnavailable as exc:
            log.error("cannot read the cancel requests; running the job", extra={"error": str(exc)})
            return None

    @contextmanager
    def leased(self, claim: Claim | None, link: LeaseLink | None) -> Iterator[None]:
        """While the job runs, its lease is renewed; once lost, `link` asks the job to stop."""
        if claim is None or self.settings.table is None:
            yield
            return
        stop = threading.Event()
        lost = link.on_claim_lost() if link is not None else None
        keeper = threading.Thread(target=self._keep, args=(claim, lost, stop), name="lease", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            # Not waited for long: a renewal can block for its timeouts, and once stopped the
            # keeper acts on nothing it learns (a late answer is not the next job's business).
            keeper.join(timeout=KEEPER_JOIN_S)

    def _keep(self, claim: Claim, lost: Callable[[], None] | None, stop: threading.Event) -> None:
        while not stop.wait(self.settings.renew_every_s):
            faults.stall("lease-renewal", RENEWAL_STALL_FAULT_S)
            ours = self.still_ours(claim, renew=True)
            if stop.is_set():
                return  # the job settled while the renewal was out: its answer is stale
            if not ours:
                log.warning("the job's claim went to another worker; stopping it", extra={"fence": claim.fence})
                if lost is not None:
                    lost()
                return

    def still_ours(self, claim: Claim | None, *, renew: bool = False) -> bool:
        """False only when the table says another worker holds the job. Asked (and the lease
        renewed) when `renew`, or when the last grant is older than half a lease: a younger
        one cannot have lapsed, so a short job costs no call here."""
        if claim is None or self.settings.table is None:
            return True
        if not renew and time.monotonic() - self._confirmed_at < self.settings.lease_s / 2:
            return True
        try:
            ours = self.settings.table.renew(claim, self.settings.lease_s)
        except TableUnreachable as exc:
            self._table_failed(exc, "cannot renew the job's lease")
            return True
        self._table_answered()
        if ours:
            self._confirmed_at = time.monotonic()
        return ours

    def settle(self, job_id: str, claim: Claim | None, status: str, result_json: str, final: bool) -> None:
        """The outcome stored under the claim (final), or the claim given back (to be retried);
        ClaimLost if the claim is no longer this worker's. A final outcome ends the job's cancel
        requests (under a claim, in the same write)."""
        table = self.settings.table
        if claim is None or table is None:
            if final:
                self._forget_cancels(job_id)
            return
        try:
            if final:
                ours = table.finish(claim, status, result_json, self.settings.retention_s)
            else:
                ours = table.give_back(claim)
        except TableUnreachable as exc:
            self._table_failed(exc, "publishing the outcome without the table (the journal keeps it)")
            return
        self._table_answered()
        if not ours:
            raise ClaimLost(claim.job_id)

    def _forget_cancels(self, job_id: str) -> None:
        if self.settings.marks is None:
            return
        try:
            self.settings.marks.forget(job_id, time.time())
        except CancelUnavailable as exc:
            log.error("cannot drop the finished job's cancel request", extra={"error": str(exc)})

    def _table_failed(self, exc: TableUnreachable, consequence: str) -> None:
        log.error("the job table cannot be reached", extra={"error": str(exc), "consequence": consequence})
        if self._table_problem is None:
            self._table_problem = str(exc)
            self._on_table(self._table_problem)

    def _table_answered(self) -> None:
        if self._table_problem is not None:
            self._table_problem = None
            self._on_table(None)


def _verdict(found: Claim | Refusal) -> Verdict:
    if isinstance(found, Claim):
        return Go(found) if found.cancel is None else Canceled(found.cancel, found)
    if found.finished_status is not None:
        return FinishedElsewhere(found.finished_status, found.finished_as or "", found.result)
    return HeldElsewhere(found.owner or "another worker", found.lease_left_s)

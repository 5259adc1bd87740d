"""The worker's state as the status file, the metrics and systemd's STATUS line show it."""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Protocol

import msgspec

from monitoring.metrics import (
    child_restart_count,
    input_cache_totals,
    jobs_by_service,
    jobs_by_status,
    queue_error_count,
    released_counts,
    service_label,
)
from monitoring.state import InputCacheState, Resource, RunningJob, WaitingJob, WorkerState
from protocol.version import VERSION

if TYPE_CHECKING:
    from pool.holding.custody import Custody
    from pool.holding.lanes import Held
    from pool.parts import SupervisorParts, SupervisorSettings
    from pool.settling.job_history import JobHistory
    from pool.slots import Slot, SlotTable
    from staging.input_cache import InputCacheSettings

MAX_WAITING_LISTED = 50


class SupervisorView(Protocol):
    """What the snapshot reads of the supervisor."""

    settings: SupervisorSettings
    parts: SupervisorParts
    slots: SlotTable
    custody: Custody
    history: JobHistory
    started_at: float
    stopping: bool
    draining: bool


def worker_state(supervisor: SupervisorView) -> WorkerState:
    slots, custody, parts = supervisor.slots, supervisor.custody, supervisor.parts
    now, clock = parts.clock.time(), parts.clock.monotonic()
    live = slots.live()
    busy = [slot for slot in live if slot.job is not None]
    threads = (parts.intake, parts.outbox, parts.ledger, parts.monitor, *parts.upkeep)
    return WorkerState(
        pid=os.getpid(),
        version=VERSION,
        kind=slots.child.worker_kind,
        queue=parts.queue.spec,
        workers=slots.count,
        started_at=supervisor.started_at,
        updated_at=now,
        busy=len(busy),
        idle=sum(1 for slot in live if slot.idle),
        starting=sum(1 for slot in live if not slot.ready),
        in_flight=len(busy) + custody.held_count + parts.courier.pending_count(),
        held=custody.held_count,
        jobs=jobs_by_status(),
        queue_errors=queue_error_count(),
        child_restarts=child_restart_count(),
        boot_failures=slots.boot_failures,
        stopping=supervisor.stopping,
        journal_problem=parts.ledger.health.problem,
        thread_problems=[problem for part in threads if (problem := part.problem())],
        stall_limit_s=supervisor.settings.stall_limit_s,
        running=[_running(slots, slot, clock) for slot in busy],
        services=jobs_by_service(),
        scratch_free_bytes=parts.space.free_bytes,
        scratch_reserve_bytes=parts.space.reserve_bytes,
        scratch_problem=parts.space.problem(),
        resources=_resources(custody),
        draining=supervisor.draining,
        waiting=_waiting(custody, clock),
        recent=supervisor.history.recent(),
        per_minute=supervisor.history.per_minute(now),
        input_cache=_input_cache(slots.child.input_cache),
        notice=_notice(parts),
        scale_in_protected=_protected(parts),
        scale_in_problem=_protection_problem(parts),
        waiting_for={} if parts.passing_on is None else parts.passing_on.waiting_for(),
    )


def _notice(parts: SupervisorParts) -> str | None:
    """The instance notices seen, what each means, and how many messages went back for it."""
    seen = [] if parts.fleet is None else parts.fleet.seen()
    if not seen:
        return None
    released = released_counts()
    said = []
    for notice in seen:
        meaning = (
            "no new jobs" if notice.soft else f"leaving the box; {released.get(notice.source, 0)} messages released"
        )
        said.append(f"{notice.detail}: {meaning}")
    return "; ".join(said) or None


def _protected(parts: SupervisorParts) -> bool | None:
    protection = None if parts.fleet is None else parts.fleet.options.protection
    return None if protection is None else protection.protected


def _protection_problem(parts: SupervisorParts) -> str | None:
    protection = None if parts.fleet is None else parts.fleet.options.protection
    return None if protection is None else protection.problem


def _running(slots: SlotTable, slot: Slot, clock: float) -> RunningJob:
    job = slot.job
    assert job is not None
    accepted = slots.accepted(slot)
    message = job.message
    running = RunningJob(slot.index, message.message_id, message.receive_count, round(clock - job.started, 1))
    if job.progress is not None:
        running = msgspec.structs.replace(
            running, progress_percent=job.progress.percent, progress_message=job.progress.message
        )
    if accepted is None:
        return running
    service = service_label(accepted.service, accepted.queue, slots.known_services)
    return msgspec.structs.replace(
        running, service=service, job_id=accepted.job_id, named=accepted.service, kind=accepted.queue
    )


def _waiting(custody: Custody, clock: float) -> list[WaitingJob]:
    """The first MAX_WAITING_LISTED held messages, with what each waits for."""
    if not custody.held_count:
        return []
    eligible_now, startable = custody.eligible_and_startable()
    eligible = {id(held) for held in eligible_now}
    admitted = {id(held) for held in startable}
    waiting = []
    for held in itertools.islice(custody.lanes, MAX_WAITING_LISTED):
        waiting.append(_waiting_job(held, clock, admitted=id(held) in admitted, eligible=id(held) in eligible))
    return waiting


def _waiting_job(held: Held, clock: float, *, admitted: bool, eligible: bool) -> WaitingJob:
    if admitted:
        why = "a free slot"
    elif eligible:
        why = "room on the box or under its service's max-running"
    else:
        why = "the job before it in its message group"
    message = held.message
    waited = round(clock - held.held_since, 1)
    return WaitingJob(message.message_id, message.receive_count, waited, why, message.group_id)


def _input_cache(settings: InputCacheSettings | None) -> InputCacheState | None:
    if settings is None:
        return None
    totals = input_cache_totals()
    return InputCacheState(
        str(settings.directory),
        settings.size_bytes,
        hits=totals.get("hit", 0),
        misses=totals.get("miss", 0),
        evicted=totals.get("evicted", 0),
        bytes_saved=totals.get("saved", 0),
        bytes_fetched=totals.get("fetched", 0),
    )


def _resources(custody: Custody) -> dict[str, Resource]:
    """Capacity and what the running jobs reserve, per resource."""
    admission = custody.admission
    if admission is None:
        return {}
    reserved = [job.reservation for job in custody.running]
    capacity = admission.capacity
    return {
        "memory_bytes": Resource(capacity.memory_bytes, sum(r.memory_bytes for r in reserved)),
        "cpus": Resource(capacity.cpus, sum(r.cpus for r in reserved)),
        "gpus": Resource(len(capacity.gpus), sum(r.gpus for r in reserved)),
    }

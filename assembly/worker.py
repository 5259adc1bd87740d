"""The composition root: build the worker's parts from its settings (queues, journal, outcome
policy, child settings, custody, slot table, intake and outbox as the queue's profile asks,
courier, ledger, monitoring), wire them into a supervisor and run it until it stops."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO

from assembly.children import admission, child_settings, image_state_dir, job_deadline_s
from assembly.fleet import PlacementParts, fleet_watch, placement
from assembly.monitoring import monitor
from common.pathlock import PathInUse, hold_lock
from config.capacity import disk_reserve_bytes
from config.settings import WorkerSettings
from journal.base import JournalInUse
from journal.health import JournalHealth
from journal.sqlite import SqliteJournal
from monitoring.metrics import record_queue_call
from monitoring.monitor import Monitor
from pool.child_settings import ChildSettings
from pool.holding.custody import Custody
from pool.holding.intake import AnyIntake, Intake, PollingIntake
from pool.holding.passing_on import PassingOn
from pool.holding.prefetch import NO_PREFETCH, Prefetch, PrefetchSettings
from pool.holding.round_trip import RoundTrip
from pool.outcomes import OutcomePolicy
from pool.parts import SupervisorParts, SupervisorSettings, Upkeep
from pool.settling.courier import ResultCourier
from pool.settling.destinations import Destinations
from pool.settling.job_ends import JobEnds
from pool.settling.job_history import JobHistory
from pool.settling.ledger import Ledger
from pool.settling.outbox import InlineOutbox, Outbox, ThreadOutbox
from pool.slots import SlotTable
from pool.supervisor import Supervisor
from pool.upkeep.cancel_watch import CancelWatch
from pool.upkeep.idle_exit import IdleExit
from pool.upkeep.image_cache import CacheCleaner, ImageCache, ImageCacheSettings
from pool.upkeep.scratch_space import ScratchSpace
from pool.waker import Waker
from queues import default_result_queue, open_queue
from queues.backlog import CachedBacklog
from queues.base import LONG_POLL_S, POLL_INTERVAL_S, DeliveryProfile, JobQueue
from queues.call_timing import watch_calls
from staging.workspace import SCRATCH_LOCK_NAME

log = logging.getLogger(__name__)


def serve(settings: WorkerSettings) -> int:
    """Run the worker; its exit status. ValueError: the settings cannot work here (another
    worker holds one of this one's paths, say)."""
    scratch_dir = settings.scratch_dir.resolve()
    scratch_lock = _hold_scratch_dir(scratch_dir)
    try:
        return _serve(settings, scratch_dir)
    finally:
        if scratch_lock is not None:
            scratch_lock.close()


def _serve(settings: WorkerSettings, scratch_dir: Path) -> int:
    journal = _open_journal(settings.journal.expanduser().absolute())
    try:
        return _run(settings, scratch_dir, journal)
    finally:
        journal.close()


def _run(settings: WorkerSettings, scratch_dir: Path, journal: SqliteJournal) -> int:
    watch_calls(record_queue_call)
    bucket = settings.large_payload_bucket
    job_queue = open_queue(settings.queue, bucket, settings.max_body_size)
    result_queue = (
        open_queue(settings.result_queue, bucket) if settings.result_queue else default_result_queue(job_queue)
    )
    dead_letter_queue = open_queue(settings.dead_letter_queue, bucket) if settings.dead_letter_queue else None
    if result_queue is None:
        log.info("no --result-queue given: results go to the log only")
    policy = OutcomePolicy(
        max_attempts=job_queue.attempts_limit(settings.max_attempts),
        retry_delay_s=settings.retry_delay,
        dead_letter=dead_letter_queue is not None,
        instance=settings.name,
    )
    child = child_settings(settings, scratch_dir, job_queue, journal.path, policy)
    if child.gate.table is not None:
        child.gate.table.check()
    return Supervisor(
        SupervisorSettings(settings.shutdown_grace, settings.health_stall_limit, settings.notice_margin),
        _parts(
            settings,
            child,
            job_queue=job_queue,
            result_queue=result_queue,
            dead_letter_queue=dead_letter_queue,
            journal=journal,
            policy=policy,
        ),
    ).run()


def _parts(
    settings: WorkerSettings,
    child: ChildSettings,
    *,
    job_queue: JobQueue,
    result_queue: JobQueue | None,
    dead_letter_queue: JobQueue | None,
    journal: SqliteJournal,
    policy: OutcomePolicy,
) -> SupervisorParts:
    waker = Waker()
    outbox, courier, health = _delivery(job_queue, result_queue, dead_letter_queue, journal)
    slots = SlotTable(child, settings.workers, job_deadline_s(child, settings.deadline_margin))
    ledger = Ledger(journal, health, courier, retention_s=settings.journal_retention)
    monitoring = monitor(settings, child.scratch_dir, child.gate.marks, waker.wake, CachedBacklog(job_queue))
    placed = placement(
        settings, child, PlacementParts(job_queue, outbox, ledger, policy, lambda: _draining(monitoring))
    )
    custody = _custody(settings, child, job_queue, outbox, placed.passing_on)
    prefetch = _prefetch(settings, job_queue.profile)
    space = _scratch_space(settings, child.scratch_dir, slots, custody)
    images = _image_cache(settings, child, journal, custody)
    cancels = _cancel_watch(settings, child, slots)
    busy = lambda: bool(slots.busy()) or custody.held_count > 0  # noqa: E731
    fleet = fleet_watch(settings, busy)
    idle_exit = None if settings.exit_when_idle is None else IdleExit(settings.exit_when_idle, busy)
    history = JobHistory()
    return SupervisorParts(
        queue=job_queue,
        slots=slots,
        custody=custody,
        intake=_intake(settings, job_queue, waker),
        outbox=outbox,
        courier=courier,
        ledger=ledger,
        policy=policy,
        prefetch=prefetch,
        monitor=monitoring,
        waker=waker,
        space=space,
        images=images,
        cancels=cancels,
        fleet=fleet,
        upkeep=_present(space, images, cancels, fleet, placed.shapes, placed.passing_on, idle_exit),
        idle_exit=idle_exit,
        passing_on=placed.passing_on,
        history=history,
        ends=JobEnds(custody, ledger, policy, prefetch, images, slots.known_services, history),
    )


def _delivery(
    job_queue: JobQueue, result_queue: JobQueue | None, dead_letter_queue: JobQueue | None, journal: SqliteJournal
) -> tuple[Outbox, ResultCourier, JournalHealth]:
    """The outbox the queue's profile asks for, and the courier that delivers through it."""
    profile = job_queue.profile
    outbox: Outbox = InlineOutbox() if profile.calls_in_loop else ThreadOutbox(profile.calls_in_flight)
    health = JournalHealth(journal.location)
    destinations = Destinations(job_queue, result_queue)
    courier = ResultCourier(
        job_queue, destinations, outbox, journal=journal, health=health, dead_letter_queue=dead_letter_queue
    )
    return outbox, courier, health


def _custody(
    settings: WorkerSettings, child: ChildSettings, job_queue: JobQueue, outbox: Outbox, passing_on: PassingOn | None
) -> Custody:
    return Custody(
        job_queue,
        outbox,
        settings.visibility_timeout,
        caps=_caps(settings),
        admission=admission(child),
        pass_on=None if passing_on is None else passing_on.takes,
    )


def _present(*parts: Upkeep | None) -> tuple[Upkeep, ...]:
    return tuple(part for part in parts if part is not None)


def _draining(monitoring: Monitor) -> bool:
    """Whether the worker takes no new jobs, as it last published."""
    latest = monitoring.latest
    return latest is not None and (latest.draining or latest.stopping)


def _prefetch(settings: WorkerSettings, profile: DeliveryProfile) -> Prefetch:
    prefetch_settings = PrefetchSettings(settings.prefetch_window, settings.prefetch_max)
    round_trip = RoundTrip()
    watch_calls(round_trip.observe)
    return Prefetch(prefetch_settings if profile.prefetch else NO_PREFETCH, settings.workers, round_trip.seconds)


def _cancel_watch(settings: WorkerSettings, child: ChildSettings, slots: SlotTable) -> CancelWatch | None:
    marks = child.gate.marks
    if marks is None:
        return None  # SQS without a job table: nowhere to read cancel requests from
    return CancelWatch(marks, settings.cancel_poll, slots, table=settings.job_table)


def _image_cache(
    settings: WorkerSettings, child: ChildSettings, journal: SqliteJournal, custody: Custody
) -> ImageCache | None:
    docker = settings.docker
    if docker is None:
        return None  # no docker jobs
    from runners.image_store import EngineImages  # noqa: PLC0415 (the docker SDK only where it is used)

    cache = ImageCacheSettings(
        high=docker.image_cache_high,
        low=docker.image_cache_low,
        max_bytes=docker.image_cache_max,
        keep=docker.keep_image,
        min_idle_s=docker.image_min_idle,
        remove_unpulled=docker.remove_unpulled_images,
    )
    return ImageCache(CacheCleaner(cache, journal, EngineImages(), image_state_dir(child.scratch_dir)), custody)


def _scratch_space(settings: WorkerSettings, scratch_dir: Path, slots: SlotTable, custody: Custody) -> ScratchSpace:
    try:
        reserve = disk_reserve_bytes(settings.disk_reserve, scratch_dir)
    except OSError as exc:  # jobs report an unusable scratch directory themselves
        log.warning("cannot size the scratch filesystem's reserve", extra={"error": str(exc)})
        reserve = 0
    return ScratchSpace(scratch_dir, reserve, slots, custody)


def _caps(settings: WorkerSettings) -> dict[str, int]:
    """`max-running` by service."""
    return {service.name: service.max_running for service in settings.services if service.max_running}


def _hold_scratch_dir(scratch_dir: Path) -> IO[bytes] | None:
    """The scratch directory's lock, held while the worker runs: its start-up clean-up, job
    directories, containers (labelled with it) and status file are this worker's alone."""
    try:
        return hold_lock(scratch_dir / SCRATCH_LOCK_NAME)
    except PathInUse as exc:
        raise ValueError(
            f"scratch directory {scratch_dir} is in use by another worker (pid {exc.holder}): "
            "give this worker its own --scratch-dir, or another --name"
        ) from None
    except OSError as exc:
        # Jobs report an unusable scratch directory themselves (a mount may yet appear): not fatal here.
        log.warning("cannot lock the scratch directory", extra={"path": str(scratch_dir), "error": str(exc)})
        return None


def _open_journal(path: Path) -> SqliteJournal:
    try:
        return SqliteJournal(path)
    except JournalInUse as exc:
        raise ValueError(f"{exc}: give this worker its own --journal, or another --name") from None


def _intake(settings: WorkerSettings, job_queue: JobQueue, waker: Waker) -> AnyIntake:
    """The loop receives itself from a queue whose calls are local transactions; a thread
    long-polls any other, so the loop never waits on the network."""
    if job_queue.profile.calls_in_loop:
        return PollingIntake(job_queue, visibility_timeout=settings.visibility_timeout, poll_interval_s=POLL_INTERVAL_S)
    return Intake(
        job_queue,
        visibility_timeout=settings.visibility_timeout,
        wait_seconds=LONG_POLL_S,
        wake=waker.wake,
        receives_in_flight=job_queue.profile.receives_in_flight,
    )

"""The composition root: build the worker's parts from its settings (queues, journal, outcome
policy, child settings, custody, slot table, intake and outbox as the queue's profile asks,
courier, ledger, monitoring), wire them into a supervisor and run it until it stops."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO

from common.pathlock import PathInUse, hold_lock
from config.settings import WorkerSettings
from journal.base import JournalInUse
from journal.health import JournalHealth
from journal.sqlite import SqliteJournal
from monitoring.monitor import Monitor
from monitoring.state import status_path
from pool.courier import ResultCourier
from pool.custody import Custody
from pool.destinations import Destinations
from pool.intake import AnyIntake, Intake, PollingIntake
from pool.ledger import Ledger
from pool.outbox import InlineOutbox, Outbox, ThreadOutbox
from pool.outcomes import OutcomePolicy
from pool.prefetch import NO_PREFETCH, Prefetch, PrefetchSettings
from pool.settings import ChildSettings
from pool.slots import SlotTable
from pool.supervisor import Supervisor, SupervisorParts, SupervisorSettings
from pool.waker import Waker
from queues import default_result_queue, open_queue
from queues.base import LONG_POLL_S, POLL_INTERVAL_S, JobQueue
from runners.container_settings import ContainerSettings
from runners.image_policy import ImagePolicy
from runners.limits import JobLimits
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
    child = _child_settings(settings, scratch_dir, job_queue, journal.path)
    return Supervisor(
        SupervisorSettings(settings.shutdown_grace, settings.health_stall_limit),
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
    outbox: Outbox = InlineOutbox() if job_queue.profile.calls_in_loop else ThreadOutbox()
    health = JournalHealth(journal.location)
    courier = ResultCourier(
        job_queue,
        Destinations(job_queue, result_queue),
        outbox,
        journal=journal,
        health=health,
        dead_letter_queue=dead_letter_queue,
    )
    prefetch = PrefetchSettings(settings.prefetch_window, settings.prefetch_max)
    return SupervisorParts(
        queue=job_queue,
        slots=SlotTable(child, settings.workers, job_deadline_s(child, settings.deadline_margin)),
        custody=Custody(job_queue, outbox, settings.visibility_timeout),
        intake=_intake(settings, job_queue, waker),
        outbox=outbox,
        courier=courier,
        ledger=Ledger(journal, health, courier, retention_s=settings.journal_retention),
        policy=policy,
        prefetch=Prefetch(prefetch if job_queue.profile.prefetch else NO_PREFETCH, settings.workers),
        monitor=_monitor(settings, child.scratch_dir),
        waker=waker,
    )


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


def job_deadline_s(child: ChildSettings, margin_s: float) -> float | None:
    """How long a child may hold one job before the supervisor kills it: both transfer
    allowances, the job's timeout, the kill grace and the margin. None without a job timeout
    ceiling: the command itself may then run for as long as it likes."""
    limits = child.ceilings
    if limits.timeout_s is None:
        return None
    return 2 * (limits.transfer_timeout_s or 0.0) + limits.timeout_s + child.kill_grace_s + margin_s


def _intake(settings: WorkerSettings, job_queue: JobQueue, waker: Waker) -> AnyIntake:
    """The loop receives itself from a queue whose calls are local transactions; a thread
    long-polls any other, so the loop never waits on the network."""
    if job_queue.profile.calls_in_loop:
        return PollingIntake(job_queue, visibility_timeout=settings.visibility_timeout, poll_interval_s=POLL_INTERVAL_S)
    return Intake(job_queue, visibility_timeout=settings.visibility_timeout, wait_seconds=LONG_POLL_S, wake=waker.wake)


def _child_settings(
    settings: WorkerSettings, scratch_dir: Path, job_queue: JobQueue, journal_path: Path
) -> ChildSettings:
    native = settings.native
    return ChildSettings(
        worker_kind=settings.command_name,
        instance=settings.name,
        service=native.service if native else None,
        base_command=native.program if native else (),
        scratch_dir=scratch_dir,
        queue_spec=job_queue.spec,
        supervisor_pid=os.getpid(),
        log_format=settings.log_format,
        log_level=settings.log_level,
        file_roots=tuple(root.absolute() for root in settings.file_root),
        pass_env=settings.pass_env,
        kill_grace_s=settings.kill_grace,
        transfer_concurrency=settings.transfer_concurrency,
        job_disk_bytes=settings.job_disk,
        max_inline_output_bytes=settings.max_inline_output,
        max_body_bytes=settings.max_body_size,
        ceilings=JobLimits(
            timeout_s=settings.job_timeout,
            memory_bytes=settings.job_memory,
            cpus=settings.job_cpus,
            cpu_seconds=settings.job_cpu_time,
            transfer_timeout_s=settings.transfer_timeout,
        ),
        docker=_container_settings(settings, scratch_dir),
        journal_path=journal_path if settings.dedupe == "job-id" else None,
        progress_interval_s=settings.progress_interval,
    )


def _container_settings(settings: WorkerSettings, scratch_dir: Path) -> ContainerSettings | None:
    docker = settings.docker
    if docker is None:
        return None
    return ContainerSettings(
        worker_label=str(scratch_dir),
        images=ImagePolicy(docker.pull, docker.allow_image),
        user=docker.container_user,
        network=docker.network,
        pids_limit=docker.pids_limit,
        pass_env=settings.pass_env,
    )


def _monitor(settings: WorkerSettings, scratch_dir: Path) -> Monitor:
    try:
        return Monitor(status_path(scratch_dir), settings.metrics_address, settings.metrics_port)
    except OSError as exc:
        raise ValueError(
            f"cannot serve metrics on {settings.metrics_address}:{settings.metrics_port}: {exc.strerror or exc}"
        ) from None

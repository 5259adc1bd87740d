"""Build the worker from its settings (queues, journal, outcome policy, runner and child
settings, monitoring, supervisor) and run it until it stops."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from pathlib import Path

from journal.sqlite import SqliteJournal
from monitoring.monitor import Monitor
from monitoring.state import status_path
from pool.outcomes import OutcomePolicy
from pool.prefetch import PrefetchSettings
from pool.settings import ChildSettings
from pool.supervisor import Supervisor, SupervisorSettings
from queues import default_result_queue, open_queue
from queues.base import LONG_POLL_S, JobQueue
from runners.container_settings import ContainerSettings
from runners.image_policy import ImagePolicy
from runners.limits import JobLimits

log = logging.getLogger(__name__)


def serve(settings: argparse.Namespace) -> int:
    """Run the worker; its exit status. ValueError: the settings cannot work here."""
    scratch_dir = settings.scratch_dir.resolve()
    bucket = settings.large_payload_bucket
    job_queue = open_queue(settings.queue, bucket, settings.max_body_size)
    result_queue = (
        open_queue(settings.result_queue, bucket) if settings.result_queue else default_result_queue(job_queue)
    )
    dead_letter_queue = open_queue(settings.dead_letter_queue, bucket) if settings.dead_letter_queue else None
    if result_queue is None:
        log.info("no --result-queue given: results go to the log only")
    journal = SqliteJournal(settings.journal.expanduser().absolute())
    try:
        outcomes = OutcomePolicy(
            max_attempts=job_queue.attempts_limit(settings.max_attempts),
            retry_delay_s=settings.retry_delay,
            dead_letter=dead_letter_queue is not None,
        )
        child = _child_settings(settings, scratch_dir, job_queue, outcomes, journal.path)
        # Jobs report an unusable scratch directory themselves (a mount may yet appear): not fatal here.
        with contextlib.suppress(OSError):
            scratch_dir.mkdir(parents=True, exist_ok=True)
        supervisor = Supervisor(
            _supervisor_settings(settings, child),
            job_queue,
            result_queue,
            journal,
            dead_letter_queue=dead_letter_queue,
            monitor=_monitor(settings, scratch_dir),
        )
        return supervisor.run()
    finally:
        journal.close()


def _child_settings(
    settings: argparse.Namespace, scratch_dir: Path, job_queue: JobQueue, outcomes: OutcomePolicy, journal_path: Path
) -> ChildSettings:
    return ChildSettings(
        worker_kind=settings.command_name,
        service=getattr(settings, "service", None),
        base_command=tuple(settings.program),
        scratch_dir=scratch_dir,
        queue_spec=job_queue.spec,
        supervisor_pid=os.getpid(),
        outcomes=outcomes,
        log_format=settings.log_format,
        log_level=settings.log_level,
        file_roots=tuple(root.absolute() for root in settings.file_root),
        pass_env=tuple(settings.pass_env),
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
        docker=_container_settings(settings, scratch_dir) if settings.command_name == "docker" else None,
        journal_path=journal_path if settings.dedupe == "job-id" else None,
        progress_interval_s=settings.progress_interval,
    )


def _container_settings(settings: argparse.Namespace, scratch_dir: Path) -> ContainerSettings:
    return ContainerSettings(
        worker_label=str(scratch_dir),
        images=ImagePolicy(settings.pull, tuple(settings.allow_image)),
        user=settings.container_user,
        network=settings.network,
        pids_limit=settings.pids_limit,
        pass_env=tuple(settings.pass_env),
    )


def _supervisor_settings(settings: argparse.Namespace, child: ChildSettings) -> SupervisorSettings:
    return SupervisorSettings(
        workers=settings.workers,
        visibility_timeout=settings.visibility_timeout,
        poll_wait_s=LONG_POLL_S,  # for queues received from by a thread
        shutdown_grace_s=settings.shutdown_grace,
        child=child,
        journal_retention_s=settings.journal_retention,
        stall_limit_s=settings.health_stall_limit,
        deadline_margin_s=settings.deadline_margin,
        prefetch=PrefetchSettings(settings.prefetch_window, settings.prefetch_max),
    )


def _monitor(settings: argparse.Namespace, scratch_dir: Path) -> Monitor:
    try:
        return Monitor(status_path(scratch_dir), settings.metrics_address, settings.metrics_port)
    except OSError as exc:
        raise ValueError(
            f"cannot serve metrics on {settings.metrics_address}:{settings.metrics_port}: {exc.strerror or exc}"
        ) from None

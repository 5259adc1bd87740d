"""The settings a pool child runs jobs with, built from the worker's: its native services with
their own ceilings, its docker settings, and the supervisor's deadline for a job."""

from __future__ import annotations

import os
from pathlib import Path

from config.capacity import disk_reserve_bytes
from config.settings import WorkerSettings
from journal.job_table import JobTable
from pool.admission import Admission, Capacity
from pool.child.gate import GateSettings
from pool.child_settings import ChildSettings, NativeService
from pool.outcomes import OutcomePolicy
from queues import local_cancel_marks
from queues.base import JobQueue
from runners.container_settings import ContainerSettings
from runners.gpus import discover_gpus
from runners.image_policy import ImagePolicy
from runners.limits import JobLimits
from runners.pulls import PullSettings
from staging.input_cache import InputCacheSettings

IMAGE_STATE_DIR_NAME = ".images"


def child_settings(
    settings: WorkerSettings, scratch_dir: Path, job_queue: JobQueue, journal_path: Path, policy: OutcomePolicy
) -> ChildSettings:
    ceilings = JobLimits(
        timeout_s=settings.job_timeout,
        memory_bytes=settings.job_memory,
        cpus=settings.job_cpus,
        cpu_seconds=settings.job_cpu_time,
        transfer_timeout_s=settings.transfer_timeout,
        disk_bytes=settings.job_disk,
    )
    return ChildSettings(
        worker_kind=settings.command_name,
        instance=settings.name,
        native=_native_services(settings, ceilings),
        scratch_dir=scratch_dir,
        queue_spec=job_queue.spec,
        supervisor_pid=os.getpid(),
        log_format=settings.log_format,
        log_level=settings.log_level,
        file_roots=tuple(root.absolute() for root in settings.file_root),
        pass_env=settings.pass_env,
        kill_grace_s=settings.kill_grace,
        transfer_concurrency=settings.transfer_concurrency,
        input_cache=_input_cache(settings, scratch_dir),
        job_disk_bytes=settings.job_disk,
        max_inline_output_bytes=settings.max_inline_output,
        max_body_bytes=settings.max_body_size,
        ceilings=ceilings,
        capacity=Capacity(settings.memory_capacity, settings.cpu_capacity, box_gpus(settings.gpus)),
        docker=_container_settings(settings, scratch_dir),
        journal_path=journal_path if settings.dedupe == "job-id" else None,
        progress_interval_s=settings.progress_interval,
        policy=policy,
        gate=gate_settings(settings, job_queue),
    )


def _input_cache(settings: WorkerSettings, scratch_dir: Path) -> InputCacheSettings | None:
    if settings.input_cache_size == 0:
        return None
    try:
        reserve = disk_reserve_bytes(settings.disk_reserve, scratch_dir)
    except OSError:
        reserve = 0  # the scratch directory's own check reports it
    return InputCacheSettings(settings.input_cache_dir.absolute(), settings.input_cache_size, reserve)


def gate_settings(settings: WorkerSettings, job_queue: JobQueue) -> GateSettings:
    """Cancel requests from the job table if there is one, else from the embedded queue's file.
    A claim's lease lasts four heartbeat periods (the heartbeat comes at half the visibility
    timeout) and is renewed every period."""
    table = JobTable(settings.job_table, settings.large_payload_bucket) if settings.job_table else None
    return GateSettings(
        marks=table or local_cancel_marks(job_queue),
        table=table,
        lease_s=2 * settings.visibility_timeout,
        renew_every_s=settings.visibility_timeout / 2,
        retention_s=settings.journal_retention,
    )


def _container_settings(settings: WorkerSettings, scratch_dir: Path) -> ContainerSettings | None:
    docker = settings.docker
    if docker is None:
        return None
    return ContainerSettings(
        worker_label=str(scratch_dir),
        images=ImagePolicy(docker.pull, docker.allow_image),
        pulls=PullSettings(docker.pull_timeout, docker.ecr_registry, image_state_dir(scratch_dir)),
        user=docker.container_user,
        network=docker.network,
        pids_limit=docker.pids_limit,
        pass_env=settings.pass_env,
    )


def image_state_dir(scratch_dir: Path) -> Path:
    """The pool's image pull locks and the image cache's word on the engine's disk."""
    return scratch_dir / IMAGE_STATE_DIR_NAME


def _native_services(settings: WorkerSettings, ceilings: JobLimits) -> tuple[NativeService, ...]:
    """`native`: its one command (for any service name unless --service); `services`: each
    service's, with its own ceilings where it sets them, the worker's elsewhere."""
    if settings.native is not None:
        return (NativeService(settings.native.service, settings.native.program, ceilings),)
    return tuple(
        NativeService(
            service.name,
            service.command,
            JobLimits(
                timeout_s=service.timeout or ceilings.timeout_s,
                memory_bytes=service.memory or ceilings.memory_bytes,
                cpus=service.cpus or ceilings.cpus,
                cpu_seconds=service.cpu_time or ceilings.cpu_seconds,
                transfer_timeout_s=ceilings.transfer_timeout_s,
                disk_bytes=ceilings.disk_bytes,
            ),
        )
        for service in settings.services
    )


def job_deadline_s(child: ChildSettings, margin_s: float) -> float | None:
    """How long a child may hold one job before the supervisor kills it: both transfer
    allowances, the longest timeout a job may have here (a service's own may exceed the
    worker's), the kill grace and the margin. None where some job may have no timeout: the
    command itself may then run for as long as it likes."""
    timeouts = [child.ceilings.timeout_s] if child.docker is not None else []
    timeouts += [service.ceilings.timeout_s for service in child.native]
    if not timeouts or None in timeouts:
        return None
    transfers = 2 * (child.ceilings.transfer_timeout_s or 0.0)
    return transfers + max(t for t in timeouts if t is not None) + child.kill_grace_s + margin_s


def box_gpus(setting: str) -> tuple[str, ...]:
    """`--gpus`: auto (what the driver lists), none, or the UUIDs given."""
    if setting == "none":
        return ()
    if setting == "auto":
        return discover_gpus()
    return tuple(dict.fromkeys(gpu.strip() for gpu in setting.split(",") if gpu.strip()))


def admission(child: ChildSettings) -> Admission:
    """Admission against the box's capacity, with the ceilings each kind of job runs under."""
    native = {service.name: service.ceilings for service in child.native}
    return Admission(child.capacity, native, child.ceilings if child.docker is not None else None)

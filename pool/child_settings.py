"""Everything a pool child needs to run jobs; picklable, fixed at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pool.admission import Capacity
from pool.child.gate import NO_GATE, GateSettings
from pool.outcomes import OutcomePolicy
from runners.container_settings import ContainerSettings
from runners.limits import JobLimits
from staging.input_cache import InputCacheSettings


@dataclass(frozen=True)
class NativeService:
    """A command this worker runs for native messages of a service."""

    name: str | None  # the service a message must name; None: any
    command: tuple[str, ...]  # the message's arguments follow it
    ceilings: JobLimits  # the service's own, the worker's where it sets none


@dataclass(frozen=True)
class ChildSettings:
    worker_kind: str
    instance: str  # the worker's instance name, in every result
    native: tuple[NativeService, ...]  # the native services it serves (none: docker jobs only)
    scratch_dir: Path
    queue_spec: str
    supervisor_pid: int
    log_format: str
    log_level: str
    file_roots: tuple[Path, ...]
    pass_env: tuple[str, ...]
    kill_grace_s: float
    transfer_concurrency: int
    input_cache: InputCacheSettings | None  # None: every job downloads its own inputs
    job_disk_bytes: int | None
    max_inline_output_bytes: int
    max_body_bytes: int
    ceilings: JobLimits  # the worker's: docker jobs' ceilings
    capacity: Capacity  # the box's: a job asking for more is rejected
    docker: ContainerSettings | None  # set: it runs docker jobs
    journal_path: Path | None  # set: a job whose id the journal has as finished is not run again
    progress_interval_s: float  # at most one progress event per job this often
    policy: OutcomePolicy  # which outcomes are final (the job table keeps only those)
    gate: GateSettings = NO_GATE  # cancel requests and the shared job table

"""Everything a pool child needs to run jobs; picklable, fixed at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pool.outcomes import OutcomePolicy
from protocol.body import DEFAULT_MAX_BODY_BYTES
from runners.container_settings import ContainerSettings
from runners.limits import JobLimits


@dataclass(frozen=True)
class ChildSettings:
    worker_kind: str
    service: str | None
    base_command: tuple[str, ...]
    scratch_dir: Path
    queue_spec: str
    supervisor_pid: int
    outcomes: OutcomePolicy
    log_format: str
    log_level: str
    file_roots: tuple[Path, ...] = ()
    pass_env: tuple[str, ...] = ()
    kill_grace_s: float = 10.0
    transfer_concurrency: int = 8
    job_disk_bytes: int | None = None
    max_inline_output_bytes: int = 1024 * 1024
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ceilings: JobLimits = field(default_factory=JobLimits)
    docker: ContainerSettings | None = None  # for worker_kind "docker"
    journal_path: Path | None = None  # set: a job whose id the journal has as finished is not run again

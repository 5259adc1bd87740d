"""Everything a pool child needs to run jobs; picklable, fixed at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runners.container_settings import ContainerSettings
from runners.limits import JobLimits


@dataclass(frozen=True)
class ChildSettings:
    worker_kind: str
    instance: str  # the worker's instance name, in every result
    service: str | None
    base_command: tuple[str, ...]
    scratch_dir: Path
    queue_spec: str
    supervisor_pid: int
    log_format: str
    log_level: str
    file_roots: tuple[Path, ...]
    pass_env: tuple[str, ...]
    kill_grace_s: float
    transfer_concurrency: int
    job_disk_bytes: int | None
    max_inline_output_bytes: int
    max_body_bytes: int
    ceilings: JobLimits
    docker: ContainerSettings | None  # for worker_kind "docker"
    journal_path: Path | None  # set: a job whose id the journal has as finished is not run again
    progress_interval_s: float  # at most one progress event per job this often

"""What every runner takes and gives back."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from protocol.result import Usage
from runners.limits import JobLimits

DEFAULT_KILL_GRACE_S = 10.0


class StopReason(enum.Enum):
    """Why the worker ended a job before it ended by itself."""

    TIMEOUT = "timeout"  # its wall-clock limit
    MEMORY = "memory"
    CPU_TIME = "cpu_time"
    DISK = "disk"  # what it held in its directory
    SCRATCH_FULL = "scratch_full"  # the scratch filesystem fell below half its reserve; it held the most
    CANCELED = "canceled"  # someone asked for it by the job's id
    CLAIM_LOST = "claim_lost"  # the job table gave the job to another worker (this one's lease lapsed)

    @property
    def graceful(self) -> bool:
        """Stopped like a timeout (SIGTERM, the kill grace, SIGKILL) rather than killed at once."""
        return self in (StopReason.TIMEOUT, StopReason.CANCELED, StopReason.CLAIM_LOST)


PROGRESS_VARIABLE = "API_WORKER_PROGRESS"  # names the job's progress file, in its environment
PROGRESS_FILE_NAME = ".api-worker-progress"  # in the job directory (mounted at its own path in a container)


class JobLink(Protocol):
    """What the supervisor learns of a running job, and may ask of it, besides its process."""

    def disk_measured(self, size_bytes: int) -> None: ...

    def stop_requested(self) -> StopReason | None:
        """Why the job is to be stopped, once someone outside asks (None: it is not)."""
        ...


@dataclass(frozen=True)
class RunSpec:
    argv: list[str]
    workdir: Path
    stdin_path: Path
    stdout_path: Path
    stderr_path: Path
    limits: JobLimits = field(default_factory=JobLimits)
    kill_grace_s: float = DEFAULT_KILL_GRACE_S
    image: str = ""  # docker only: the message's service
    labels: Mapping[str, str] = field(default_factory=dict)  # docker only: names the job on its container
    link: JobLink | None = None  # None: nobody watches from outside
    gpus: tuple[str, ...] | None = None  # the devices reserved for it (UUIDs); None: the box has none

    @property
    def progress_path(self) -> Path:
        return self.workdir / PROGRESS_FILE_NAME


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int | None
    signal: str | None
    stopped_for: StopReason | None  # None: the job ended by itself
    usage: Usage


class Runner(Protocol):
    def recover(self) -> None:
        """At a child's start: clean up what an earlier child of the same slot left running."""

    def prepare(self, image: str) -> None:
        """Check, before any staging, that the job can run here (docker: its image)."""

    def run(self, spec: RunSpec) -> RunOutcome: ...


class RunnerFault(Exception):
    """The job could not be started for a reason on the worker's side: a system `error`."""


class ImageRejected(Exception):
    """The message names an image this worker may not or cannot run: `rejected`."""

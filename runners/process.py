"""What every runner takes and gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from protocol.result import Usage
from runners.limits import JobLimits


@dataclass(frozen=True)
class RunSpec:
    argv: list[str]
    workdir: Path
    stdin_path: Path
    stdout_path: Path
    stderr_path: Path
    limits: JobLimits = field(default_factory=JobLimits)
    kill_grace_s: float = 10.0


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int | None
    signal: str | None
    # "timeout", "memory" or "cpu_time" when the worker stopped the job, else None.
    limit_hit: str | None
    usage: Usage

    @property
    def timed_out(self) -> bool:
        return self.limit_hit == "timeout"


class RunnerFault(Exception):
    """The job could not be started for a reason on the worker's side: a system `error`."""

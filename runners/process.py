"""What every runner takes and gives back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from protocol.result import Usage


@dataclass(frozen=True)
class RunSpec:
    argv: list[str]
    workdir: Path
    stdin_path: Path
    stdout_path: Path
    stderr_path: Path
    timeout_s: float | None = None


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int | None
    signal: str | None
    timed_out: bool
    usage: Usage


class RunnerFault(Exception):
    """The job could not be started for a reason on the worker's side: a system `error`."""

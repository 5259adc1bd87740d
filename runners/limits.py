"""Per-job limits as runners take them, and the cores a pinned job runs on."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class JobLimits:
    """None means unlimited."""

    timeout_s: float | None = None
    memory_bytes: int | None = None
    cpus: float | None = None
    cpu_seconds: float | None = None
    transfer_timeout_s: float | None = None  # the whole stage-in, and apart the whole stage-out
    disk_bytes: int | None = None  # all the job holds in its directory: inputs and what it writes


def cores_for(cpus: float, slot: int, available: list[int] | None = None) -> set[int]:
    """ceil(cpus) of the cores this process may use, a different run of them for each slot."""
    cores = sorted(os.sched_getaffinity(0)) if available is None else available
    count = min(len(cores), max(1, math.ceil(cpus)))
    start = (slot * count) % len(cores)
    return {cores[(start + offset) % len(cores)] for offset in range(count)}

"""The box's capacity the worker admits jobs against: `--memory-capacity` and `--cpu-capacity`."""

from __future__ import annotations

import argparse
import os

import psutil

from common.sizes import format_size
from config.values import positive_float, size

SYSTEM_RESERVE_SHARE = 0.1  # of the box's memory kept for the worker itself and the system
SYSTEM_RESERVE_MIN_BYTES = 1024**3


def default_memory_capacity() -> int:
    """The box's memory less a reserve for the worker and the system (10%, at least 1 GiB)."""
    total = psutil.virtual_memory().total
    return max(0, total - max(SYSTEM_RESERVE_MIN_BYTES, int(total * SYSTEM_RESERVE_SHARE)))


def default_cpu_capacity() -> float:
    """The CPUs this process may use."""
    return float(len(os.sched_getaffinity(0)))


def add_capacity_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory-capacity",
        type=size,
        default=None,
        help=f"memory the running jobs' reservations (each its memory ceiling) may add up to (default: this "
        f"box's memory less 10%%, at least 1G, for the system: {format_size(default_memory_capacity())} here)",
    )
    parser.add_argument(
        "--cpu-capacity",
        type=positive_float,
        default=None,
        help=f"cores the running jobs' reservations (each its cpus) may add up to (default: the CPUs the worker "
        f"may use: {default_cpu_capacity():g} here)",
    )

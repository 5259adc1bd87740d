"""The box's capacity the worker admits jobs against: `--memory-capacity` and `--cpu-capacity`."""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

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


DEFAULT_DISK_RESERVE_PERCENT = 5.0
DEFAULT_DISK_RESERVE_MIN_BYTES = 1024**3


@dataclass(frozen=True)
class DiskReserve:
    """`--disk-reserve`: a size, or a share of the scratch filesystem."""

    size_bytes: int | None = None
    percent: float | None = None

    def of(self, filesystem_bytes: int) -> int:
        if self.size_bytes is not None:
            return self.size_bytes
        return int(filesystem_bytes * (self.percent or 0.0) / 100)


def disk_reserve(text: str) -> DiskReserve:
    stripped = text.strip()
    if stripped.endswith("%"):
        try:
            percent = float(stripped[:-1])
        except ValueError:
            percent = -1.0
        if not 0 <= percent < 100:
            raise argparse.ArgumentTypeError(f"{text!r} is no share of the filesystem: a percentage from 0% below 100%")
        return DiskReserve(percent=percent)
    if stripped == "0":
        return DiskReserve(size_bytes=0)
    return DiskReserve(size_bytes=size(stripped))


def disk_reserve_bytes(reserve: DiskReserve | None, scratch_dir: Path) -> int:
    """The reserve for this scratch filesystem; by default 5% of it, at least 1 GiB."""
    total = shutil.disk_usage(scratch_dir).total
    if reserve is None:
        return max(DEFAULT_DISK_RESERVE_MIN_BYTES, DiskReserve(percent=DEFAULT_DISK_RESERVE_PERCENT).of(total))
    return reserve.of(total)


def add_capacity_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpus",
        default="auto",
        metavar="auto|none|ID,...",
        help="the GPUs jobs may reserve (resources.gpus), each for one job at a time: auto, the devices "
        "`nvidia-smi -L` lists (none without a driver); none; or device UUIDs, comma-separated",
    )
    parser.add_argument(
        "--disk-reserve",
        type=disk_reserve,
        default=None,
        metavar="SIZE|PCT",
        help="free space the scratch filesystem keeps: below it no new job starts, below half of it the job "
        "holding the most is stopped (default: 5%% of the filesystem, at least 1G; 0: none)",
    )
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

"""The scratch filesystem's reserve (--disk-reserve), on a small tmpfs of the test's own: below
the reserve no job starts; below half of it the job holding the most is stopped."""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.capacity import DiskReserve, disk_reserve, disk_reserve_bytes
from pool.upkeep.scratch_space import CHECK_EVERY_S, ScratchSpace
from testkit.clock import FakeClock
from testkit.moto_server import free_port
from testkit.timestamps import epoch_seconds
from testkit.waiting import wait_until
from tests.support import Worker, health, job, unavailable

MIB = 1024 * 1024


@pytest.fixture
def small_scratch(tmp_path: Path) -> Iterator[Path]:
    """A 200 MiB tmpfs as the worker's scratch directory."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(scratch)], check=False,
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs: {mounted.stderr}")
    yield scratch
    subprocess.run(["umount", "-l", str(scratch)], check=False)


def parameter(name: str, value: object) -> dict[str, object]:
    return {"type": "parameter", "name": name, "value": value}


def test_below_the_reserve_no_job_starts_until_space_is_freed(tmp_path: Path, small_scratch: Path) -> None:
    filler = small_scratch / "filler"
    with filler.open("wb") as file:
        os.posix_fallocate(file.fileno(), 0, 120 * MIB)  # 80 MiB free, below the 150 MiB reserve
    port = free_port()
    worker = Worker(tmp_path, options=["--disk-reserve", "150M", "--metrics-port", str(port)]).start()
    try:
        message_id = worker.submit(job())
        problems = wait_until(lambda: _unhealthy(port), 20, "the reserve in /healthz")
        assert any("below its reserve of 150M (--disk-reserve): no new job starts" in p for p in problems)
        assert worker.results_for(message_id) == []
        freed_at = time.time()
        filler.unlink()
        result = worker.result(message_id)
        assert result["status"] == "succeeded"
        assert epoch_seconds(result["started_at"]) >= freed_at - 0.01
        wait_until(lambda: health(port)[0] == 200, 20, "healthy again")
    finally:
        worker.stop()


def test_below_half_the_reserve_the_job_holding_the_most_is_stopped(tmp_path: Path, small_scratch: Path) -> None:
    worker = Worker(tmp_path, workers=2, options=["--disk-reserve", "100M"]).start()
    try:
        worker.wait_for_log("pool ready")
        small = worker.submit(job([parameter("--write-mb", 40), parameter("--sleep", 4)]))
        large = worker.submit(job([parameter("--write-mb", 120), parameter("--sleep", 30)]))
        stopped = worker.result(large, timeout=60)
        assert (stopped["status"], stopped["error"]["type"]) == ("killed", "disk")
        assert stopped["error"]["message"].startswith("the scratch filesystem fell below half its reserve")
        assert worker.result(small, timeout=60)["status"] == "succeeded"
        assert worker.leftovers() == []
    finally:
        worker.stop()


def test_the_reserve_is_a_size_or_a_share_and_by_default_5_percent_at_least_1g(tmp_path: Path) -> None:
    assert disk_reserve("2G") == DiskReserve(size_bytes=2 * 1024**3)
    assert disk_reserve("10%") == DiskReserve(percent=10.0)
    assert disk_reserve("0") == DiskReserve(size_bytes=0)
    for bad in ("150%", "lots", "-1%"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"no share of the filesystem|is not a size"):
            disk_reserve(bad)
    total = os.statvfs(tmp_path).f_blocks * os.statvfs(tmp_path).f_frsize
    assert disk_reserve_bytes(None, tmp_path) == max(1024**3, int(total * 0.05))
    assert disk_reserve_bytes(DiskReserve(percent=10.0), tmp_path) == int(total * 0.1)


def _unhealthy(port: int) -> list[str] | None:
    status, body = health(port)
    problems: list[str] = body.get("problems", [])
    return problems if status == 503 and problems else None


def test_the_reserve_is_looked_at_once_a_second_on_its_clock(tmp_path: Path) -> None:
    clock, looks = FakeClock(), []

    def free(path: Path) -> int:
        looks.append(path)
        return 10

    space = ScratchSpace(tmp_path, 100, SlotsAtRest(), HeldNothing(), free, clock=clock)  # type: ignore[arg-type]
    space.tick()
    space.tick()
    assert len(looks) == 1 and not space.open and space.next_due() == clock.monotonic() + CHECK_EVERY_S
    clock.advance(CHECK_EVERY_S)
    space.tick()
    assert len(looks) == 2


class SlotsAtRest:
    def busy(self) -> list[object]:
        return []


class HeldNothing:
    def release_waiting(self, why: str, reason: str) -> None:
        pass

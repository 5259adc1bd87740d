"""The scratch filesystem's reserve: below it the worker starts no new job (and hands back the
messages it holds); below half of it, the running job holding the most is stopped, before the
journal or the queue file beside it can fail for want of space."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from common.clock import SYSTEM_CLOCK, Clock
from common.sizes import format_size
from pool.holding.custody import Custody
from pool.slots import SlotTable
from pool.wire import STOP_FOR_DISK

log = logging.getLogger(__name__)
CHECK_EVERY_S = 1.0


class ScratchSpace:
    def __init__(
        self,
        scratch_dir: Path,
        reserve_bytes: int,
        slots: SlotTable,
        custody: Custody,
        free_bytes: Callable[[Path], int] | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.clock = clock
        self.scratch_dir = scratch_dir
        self.reserve_bytes = reserve_bytes
        self.slots = slots
        self.custody = custody
        self._free_of = free_bytes or (lambda path: shutil.disk_usage(path).free)
        self.free_bytes: int | None = None  # at the last look; None: could not look
        self._due = 0.0
        self._short_looks = 0  # looks in a row that found less than half the reserve free

    @property
    def open(self) -> bool:
        """Whether new jobs may start."""
        return self.free_bytes is None or self.free_bytes >= self.reserve_bytes

    def start(self) -> None:
        pass  # no thread: a look at the free space is one statfs, in the loop

    def stop(self) -> None:
        pass

    def next_due(self) -> float:
        return self._due

    def problem(self) -> str | None:
        if self.open:
            return None
        assert self.free_bytes is not None
        return (
            f"the scratch filesystem has {format_size(self.free_bytes)} free, below its reserve of "
            f"{format_size(self.reserve_bytes)} (--disk-reserve): no new job starts"
        )

    def tick(self) -> None:
        """Look at the free space once due; act on a change."""
        if self.clock.monotonic() < self._due:
            return
        self._due = self.clock.monotonic() + CHECK_EVERY_S
        was_open = self.open
        try:
            self.free_bytes = self._free_of(self.scratch_dir)
        except OSError:
            self.free_bytes = None  # jobs report an unusable scratch directory themselves
        if was_open and not self.open:
            log.warning("scratch filesystem below its reserve; no new jobs", extra={"free_bytes": self.free_bytes})
            self.custody.release_waiting("the scratch filesystem is below its reserve", "disk-reserve")
        elif self.open and not was_open:
            log.info("scratch filesystem above its reserve again", extra={"free_bytes": self.free_bytes})
        short = self.free_bytes is not None and self.free_bytes < self.reserve_bytes // 2
        self._short_looks = self._short_looks + 1 if short else 0
        # On the second look in a row: the jobs' own measures (every 0.5 s) are fresh by then.
        if self._short_looks >= 2:
            self._stop_the_largest()

    def _stop_the_largest(self) -> None:
        """One job at a time: the next only once the last one asked to stop is gone."""
        busy = self.slots.busy()
        if not busy or any(slot.shared.stop_request.value == STOP_FOR_DISK for slot in busy):
            return
        largest = max(busy, key=lambda slot: slot.shared.disk_bytes.value)
        log.error(
            "scratch filesystem below half its reserve; stopping the job that holds the most",
            extra={"slot": largest.index, "free_bytes": self.free_bytes, "job_bytes": largest.shared.disk_bytes.value},
        )
        largest.shared.stop_request.value = STOP_FOR_DISK

"""The fleet's shapes as this worker sees them: on a thread of its own, every heartbeat it
registers this box in the job table (its shape, kinds, whether it drains; expiring after
MISSED_HEARTBEATS missed beats) and reads the other boxes of its queue. The loop reads the
last list it got; a table that cannot be reached keeps the last list and shows in /healthz."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from common.clock import SYSTEM_CLOCK, Clock
from common.thread_health import GuardedThread
from fleet.shapes import LiveBox
from journal.fleet_table import FleetRegister, live, long_dead
from journal.job_table import TableUnreachable
from monitoring.metrics import record_thread_failure

log = logging.getLogger(__name__)
MISSED_HEARTBEATS = 3  # a registration expires after this many beats missed, plus one
LEAVE_TIMEOUT_S = 5.0


class FleetShapes:
    def __init__(
        self,
        register: FleetRegister,
        this_box: LiveBox,
        *,
        heartbeat_s: float,
        draining: Callable[[], bool],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`this_box`: its registration (its expiry is set at each beat); `draining`: whether
        this worker takes no new jobs."""
        self.register = register
        self.this_box = this_box
        self.heartbeat_s = heartbeat_s
        self.draining = draining
        self.clock = clock
        self._lock = threading.Lock()
        self._boxes: list[LiveBox] = []
        self._unreachable: str | None = None
        self._thread = GuardedThread("fleet-shapes", self._beat, count_failure=record_thread_failure)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()
        try:
            self.register.leave(self.this_box.box_id)
        except TableUnreachable as exc:
            log.warning("could not remove this box from the fleet; it expires", extra={"error": str(exc)})

    def next_due(self) -> float | None:
        return None  # the thread beats by itself

    def problem(self) -> str | None:
        with self._lock:
            unreachable = self._unreachable
        if unreachable is not None:
            return f"cannot register this box's shape in the job table ({unreachable})"
        return self._thread.problem()

    def tick(self) -> None:
        pass

    def others(self) -> list[LiveBox]:
        """The other live boxes of the queue, as last read."""
        now = self.clock.time()
        with self._lock:
            boxes = self._boxes
        return [box for box in live(boxes, now) if box.box_id != self.this_box.box_id]

    def _beat(self) -> None:
        """Register, read, then sleep a heartbeat (woken early only by `stop`)."""
        while not self._thread.stopping.is_set():
            self._beat_once()
            self._thread.stopping.wait(self.heartbeat_s)

    def _beat_once(self) -> None:
        now = self.clock.time()
        expires_at = now + self.heartbeat_s * (MISSED_HEARTBEATS + 1)
        box = replace(self.this_box, draining=self.draining(), expires_at=expires_at)
        try:
            with self._lock:
                dead = long_dead(self._boxes, now)
            self.register.register(box, dead)
            boxes = self.register.boxes()
        except TableUnreachable as exc:
            with self._lock:
                first = self._unreachable is None
                self._unreachable = str(exc)
            if first:
                log.warning("cannot register this box's shape in the job table", extra={"error": str(exc)})
            return
        with self._lock:
            if self._unreachable is not None:
                log.info("this box's shape is registered in the job table again")
            before = self._seen(self._boxes, now)
            self._boxes, self._unreachable = boxes, None
        after = self._seen(boxes, now)
        if after != before:
            changes = {
                "boxes": len(after),
                "joined": sorted(after.keys() - before.keys()),
                "left": sorted(before.keys() - after.keys()),
                "draining": sorted(box_id for box_id, draining in after.items() if draining),
            }
            log.info("the fleet's boxes changed", extra=changes)

    def _seen(self, boxes: list[LiveBox], now: float) -> dict[str, bool]:
        """The other live boxes, and whether each drains."""
        return {box.box_id: box.draining for box in live(boxes, now) if box.box_id != self.this_box.box_id}

"""`--exit-when-idle`: a worker run as a batch job (a KEDA ScaledJob's pod, say) leaves once it
has had no job running or waiting for that long, so the job completes; running jobs are never
cut short by it, because it only counts while there are none."""

from __future__ import annotations

import logging
from collections.abc import Callable

from common.clock import SYSTEM_CLOCK, Clock
from fleet.notices import IDLE, Notice

log = logging.getLogger(__name__)


class IdleExit:
    def __init__(self, after_s: float, busy: Callable[[], bool], clock: Clock = SYSTEM_CLOCK) -> None:
        """`busy`: whether a job runs or waits here."""
        self.after_s = after_s
        self.busy = busy
        self.clock = clock
        self.idle_since = clock.monotonic()
        self._told = False
        self._pending: list[Notice] = []

    def start(self) -> None:
        self.idle_since = self.clock.monotonic()

    def stop(self) -> None:
        pass

    def next_due(self) -> float | None:
        return None if self._told else self.idle_since + self.after_s

    def problem(self) -> str | None:
        return None

    def tick(self) -> None:
        now = self.clock.monotonic()
        if self._told:
            return
        if self.busy():
            self.idle_since = now
        elif now - self.idle_since >= self.after_s:
            self._told = True
            detail = f"no job for {self.after_s:g} s"
            log.info("idle long enough: leaving", extra={"idle_s": round(now - self.idle_since, 1)})
            self._pending.append(Notice(IDLE, detail, None))

    def notices(self) -> list[Notice]:
        found, self._pending = self._pending, []
        return found

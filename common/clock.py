"""The clock the supervisor's timed parts read: the system's, or a test's that moves only when
told to, so a test of a timeout or a heartbeat never waits in real time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for deadlines and intervals."""
        ...

    def time(self) -> float:
        """Epoch seconds: for what is shown or stored."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


SYSTEM_CLOCK = SystemClock()

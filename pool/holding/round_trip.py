"""The queue's round trip, measured from its quick calls, for receiving ahead of need."""

from __future__ import annotations

import statistics
import threading
from collections import deque

# A receive's time includes its long poll: only calls that answer at once measure the trip.
QUICK_CALLS = frozenset({"send", "delete", "change_visibility"})
SAMPLES = 20


class RoundTrip:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: deque[float] = deque(maxlen=SAMPLES)
        self._median = 0.0

    def observe(self, call: str, seconds: float) -> None:
        """A queue call of `call` (short name) took `seconds`; told by the backend's call timing.
        The median is taken here, once per call, not each time the loop reads it."""
        if call in QUICK_CALLS:
            with self._lock:
                self._recent.append(seconds)
                self._median = statistics.median(self._recent)

    def seconds(self) -> float:
        """The median of the recent quick calls' times; 0 before any."""
        return self._median

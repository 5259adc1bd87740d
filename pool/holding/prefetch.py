"""Prefetch: how many messages to receive beyond the idle slots.

The worker holds received-but-not-started messages only as many as it expects to start within
the prefetch window, estimated from how long its recent jobs held a slot: N slots that each
free up every D seconds start N * window / D messages within the window. Without history, or
when jobs take longer than the window, it holds none, so long jobs stay on the queue for
other workers. A receive for held messages waits until a full batch of ten is missing when the
allowance holds two batches (the other keeps the slots busy while the receive is on its way),
else until half the allowance is missing, so that each receive brings several messages (fewer
requests per job); a receive for an idle slot goes out at once. On a slow endpoint it also asks
for those expected to start during one round trip (the lead, at most 20), so that a receive is
on its way before the held ones run out. The composition root turns prefetch off where the
queue's profile says so, on FIFO queues (`NO_PREFETCH`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from statistics import fmean

from queues.base import BATCH_MAX

DURATION_HISTORY = 20  # recent jobs the estimate is taken over
SHORTEST_DURATION_S = 0.001  # a floor under the estimate, against dividing by zero
LEAD_MAX = 2 * BATCH_MAX  # most asked for ahead of the round trip


@dataclass(frozen=True)
class PrefetchSettings:
    window_s: float  # 0: hold nothing
    maximum: int  # never more held than this; 0: hold nothing

    @property
    def enabled(self) -> bool:
        return self.window_s > 0 and self.maximum > 0


NO_PREFETCH = PrefetchSettings(0.0, 0)


@dataclass(frozen=True)
class ReceiveRequest:
    for_slots: int  # idle slots with no message to start: received for at once
    to_hold: int  # messages to hold beyond them
    batch: int  # received for held messages only once this many are missing

    def count(self, pending: int) -> int:
        """How many messages to receive now, `pending` being received already and not yet
        taken; 0: none yet."""
        missing = self.for_slots + self.to_hold - pending
        if missing <= 0 or (pending >= self.for_slots and missing < self.batch):
            return 0
        return min(BATCH_MAX, missing)

    def less(self, taken: int) -> ReceiveRequest:
        """What is still wanted once `taken` messages have come: idle slots are served first."""
        for_slots = max(0, self.for_slots - taken)
        to_hold = max(0, self.to_hold - max(0, taken - self.for_slots))
        return ReceiveRequest(for_slots, to_hold, self.batch)


NOTHING_WANTED = ReceiveRequest(0, 0, 1)


class Prefetch:
    def __init__(self, settings: PrefetchSettings, slots: int, round_trip: Callable[[], float] = lambda: 0.0) -> None:
        """`round_trip`: the queue's round trip in seconds, as last measured (0: none known)."""
        self.settings = settings
        self.slots = slots
        self.round_trip = round_trip
        self._durations: deque[float] = deque(maxlen=DURATION_HISTORY)

    def job_ended(self, slot_seconds: float) -> None:
        """A job let go of its slot after this long (staging, run, clean-up)."""
        self._durations.append(slot_seconds)

    def _duration(self) -> float | None:
        """How long a job holds its slot, on recent average; None: no history, or prefetch off."""
        if not self.settings.enabled or not self._durations:
            return None
        duration = max(SHORTEST_DURATION_S, fmean(self._durations))
        return duration if duration <= self.settings.window_s else None

    def allowance(self) -> int:
        """How many messages may be held: those expected to start within the window."""
        return self._allowance(self._duration())

    def lead(self) -> int:
        """How many more to ask for, that start while a receive is on its way: a slow endpoint's
        receives go out that much earlier."""
        return self._lead(self._duration())

    def _allowance(self, duration: float | None) -> int:
        if duration is None:
            return 0
        return min(self.settings.maximum, math.floor(self.slots * self.settings.window_s / duration))

    def _lead(self, duration: float | None) -> int:
        if duration is None:
            return 0
        return min(LEAD_MAX, math.floor(self.slots / duration * self.round_trip()))

    def request(self, *, unfilled_slots: int, held: int) -> ReceiveRequest:
        """What to ask the queue for, given the idle slots with no message to start and the
        messages held once the startable ones have started."""
        duration = self._duration()  # once: the loop asks on every turn
        allowance = self._allowance(duration)
        target = allowance + self._lead(duration) if allowance else 0
        batch = BATCH_MAX if target >= 2 * BATCH_MAX else max(1, math.ceil(target / 2))
        return ReceiveRequest(max(0, unfilled_slots), max(0, target - held), batch)

"""A clock for tests: it stands still until the test moves it."""

from __future__ import annotations


class FakeClock:
    def __init__(self, start: float = 1000.0, epoch: float = 1_800_000_000.0) -> None:
        self._monotonic = start
        self._epoch = epoch

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._epoch

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._epoch += seconds

"""Faults a test injects by name, to prove that a backstop holds: `API_WORKER_TEST_FAULTS`
is a comma-separated list of `point:count` (e.g. `intake:3,outbox:2`); `check(point)` raises
InjectedFault that many times, `stall(point, seconds)` sleeps that many times. Unset, as in
production, either is one dict lookup."""

from __future__ import annotations

import os
import threading
import time

ENVIRONMENT_VARIABLE = "API_WORKER_TEST_FAULTS"


class InjectedFault(RuntimeError):
    pass


def _plan(text: str) -> dict[str, int]:
    plan = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        point, _, count = entry.partition(":")
        plan[point] = int(count or 1)
    return plan


_remaining = _plan(os.environ.get(ENVIRONMENT_VARIABLE, ""))
_lock = threading.Lock()


def _due(point: str) -> bool:
    if not _remaining:
        return False
    with _lock:
        if _remaining.get(point, 0) <= 0:
            return False
        _remaining[point] -= 1
        return True


def check(point: str) -> None:
    if _due(point):
        raise InjectedFault(f"fault injected at {point} ({ENVIRONMENT_VARIABLE})")


def stall(point: str, seconds: float) -> None:
    if _due(point):
        time.sleep(seconds)

"""Faults a test injects by name, to prove that a backstop holds: `API_WORKER_TEST_FAULTS`
is a comma-separated list of `point:count` (e.g. `intake:3,outbox:2`); `check(point)` raises
InjectedFault that many times, `stall(point, seconds)` sleeps that many times, `fires(point)`
says yes that many times. The counts are per process, unless `API_WORKER_TEST_FAULT_MARKS`
names a directory: then they are for every process that shares it (a pool child and its
replacements), each firing marked there by a file. Unset, as in production, any of them is
one dict lookup."""

from __future__ import annotations

import os
import threading
import time

ENVIRONMENT_VARIABLE = "API_WORKER_TEST_FAULTS"
MARKS_VARIABLE = "API_WORKER_TEST_FAULT_MARKS"


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
        return _first_to_mark(point, _remaining[point])


def _first_to_mark(point: str, firing: int) -> bool:
    """With a marks directory, whether this process is the first to fire this time."""
    marks = os.environ.get(MARKS_VARIABLE)
    if not marks:
        return True
    try:
        os.close(os.open(os.path.join(marks, f"{point}.{firing}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def fires(point: str) -> bool:
    """Whether the fault at `point` is due now (for a fault that is not an exception)."""
    return _due(point)


def check(point: str) -> None:
    if _due(point):
        raise InjectedFault(f"fault injected at {point} ({ENVIRONMENT_VARIABLE})")


def stall(point: str, seconds: float) -> None:
    if _due(point):
        time.sleep(seconds)

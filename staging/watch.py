"""What one job's stage-in or stage-out is moving right now, and whether it was abandoned
(over the transfer timeout), so that it names what hung and starts nothing more."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from staging.errors import StagingFault

T = TypeVar("T")

SHOWN = 3  # URIs named when the transfer is abandoned


class TransferWatch:
    def __init__(self) -> None:
        self._abandoned = threading.Event()
        self._lock = threading.Lock()
        self._active: list[str] = []

    def abandon(self) -> None:
        """Nothing more starts; what runs is left to fail or finish unseen."""
        self._abandoned.set()

    @contextmanager
    def moving(self, uri: str) -> Iterator[None]:
        if self._abandoned.is_set():
            raise StagingFault(f"{uri}: not started, the transfer was abandoned")
        with self._lock:
            self._active.append(uri)
        try:
            yield
        finally:
            with self._lock:
                self._active.remove(uri)

    def describe(self) -> str:
        with self._lock:
            active = list(self._active)
        if not active:
            return "nothing in transfer at that moment"
        more = f" and {len(active) - SHOWN} more" if len(active) > SHOWN else ""
        return f"in transfer: {', '.join(active[:SHOWN])}{more}"


def bounded_transfer(direction: str, limit_s: float | None, transfer: Callable[[TransferWatch], T]) -> T:
    """Run a stage-in or stage-out within the transfer timeout. It runs on a thread of its own,
    so that once over time it is abandoned (nothing more starts; what hangs is left behind, its
    files removed with the job directory) and the job goes on to its result; a SIGTERM waiting
    here ends the job at once. Without a limit it runs here, on the job's own thread."""
    watch = TransferWatch()
    if limit_s is None:
        return transfer(watch)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(transfer(watch))
        except BaseException as exc:  # handed to the job's thread, which reports it
            failure.append(exc)

    thread = threading.Thread(target=run, name=direction, daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        watch.abandon()
        raise StagingFault(f"{direction} took longer than the transfer timeout of {limit_s:g} s ({watch.describe()})")
    if failure:
        raise failure[0]
    return outcome[0]

"""What one job's stage-in or stage-out is moving right now, and whether it was abandoned
(over the transfer timeout), so that it names what hung and starts nothing more."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from staging.errors import StagingFault

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

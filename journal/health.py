"""Whether the journal's last write went through, for /healthz and the status command."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class JournalHealth:
    """Written by the loop and the outbox thread; read by the loop when it publishes its state."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._lock = threading.Lock()
        self._problem: str | None = None

    @property
    def problem(self) -> str | None:
        return self._problem

    def failed(self, error: str, consequence: str) -> None:
        with self._lock:
            self._problem = f"journal {self.location} cannot be written: {error}"
        log.error("journal write failed", extra={"journal": self.location, "error": error, "consequence": consequence})

    def succeeded(self) -> None:
        if self._problem is not None:
            with self._lock:
                self._problem = None
            log.info("journal writes go through again", extra={"journal": self.location})

"""Forgets finished jobs once the retention is over; the ledger runs it on a thread of its own,
never on the job path."""

from __future__ import annotations

import logging
import threading
import time

from journal.base import JobJournal, JournalError
from journal.health import JournalHealth

log = logging.getLogger(__name__)
CHUNK = 1000  # tombstones per transaction, so a prune never holds the journal for long
MAX_INTERVAL_S = 60.0


class JournalPruner:
    def __init__(self, journal: JobJournal, retention_s: float, health: JournalHealth) -> None:
        self.journal = journal
        self.retention_s = retention_s
        self.health = health
        self.interval_s = max(0.5, min(MAX_INTERVAL_S, retention_s / 4))
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def prune_once(self) -> int:
        cutoff = time.time() - self.retention_s
        pruned = 0
        try:
            while not self._stopping.is_set():
                count = self.journal.prune(cutoff, CHUNK)
                pruned += count
                if count < CHUNK:
                    break
        except JournalError as exc:
            self.health.failed(str(exc), "finished jobs past the retention are kept until a prune succeeds")
            return pruned
        if pruned:
            log.info(
                "pruned finished jobs past the retention", extra={"jobs": pruned, "journal": self.journal.location}
            )
        return pruned

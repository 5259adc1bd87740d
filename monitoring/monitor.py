"""The supervisor loop's outlet for its state: once a second at most, the latest snapshot goes
to the status file, the gauges, systemd's STATUS line and its watchdog."""

from __future__ import annotations

import logging
import queue
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from monitoring.metrics import publish_gauges, start_metrics, watch_health, watch_slots_wanted
from monitoring.page_actions import DRAIN, RESUME, ActionRules, PageActions
from monitoring.scaling import scaling_signal
from monitoring.server import MonitoringServer
from monitoring.state import WorkerState, write_state
from monitoring.status_page import PageFacts
from monitoring.systemd import SystemdNotifier
from queues.base import QueueDepth

log = logging.getLogger(__name__)
PUBLISH_INTERVAL_S = 1.0
__all__ = ["DRAIN", "RESUME", "Monitor"]


class Monitor:
    def __init__(
        self,
        status_path: Path,
        metrics_address: str = "127.0.0.1",
        metrics_port: int | None = None,
        *,
        facts: PageFacts | None = None,
        actions: ActionRules | None = None,
        wake: Callable[[], None] = lambda: None,
        backlog: Callable[[], QueueDepth | None] | None = None,
    ) -> None:
        """`backlog`: the queue's depth, for the scaling signal (None: unknown)."""
        self.status_path = status_path
        self.systemd = SystemdNotifier()
        self.latest: WorkerState | None = None
        self._published_at = 0.0
        self._status_file_failed = False
        self._commands: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._wake = wake
        start_metrics()
        watch_health(self._healthy)
        watch_slots_wanted(lambda: self._slots_wanted(backlog))
        self.server = None
        if metrics_port is not None:
            page_actions = None if actions is None else PageActions(actions, secrets.token_urlsafe(32), self._ask)
            facts = facts or PageFacts((), cancel_available=False)
            self.server = MonitoringServer(
                metrics_address, metrics_port, lambda: self.latest, facts, page_actions, backlog=backlog
            )

    def start(self) -> None:
        if self.server is not None:
            self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def problem(self) -> str | None:
        """The monitoring server's thread's, if it is failing or dead."""
        return None if self.server is None else self.server.problem()

    def _healthy(self) -> bool:
        latest = self.latest
        return latest is not None and not latest.problems(time.time())

    def _slots_wanted(self, backlog: Callable[[], QueueDepth | None] | None) -> float:
        latest = self.latest
        if latest is None:
            return 0.0
        return float(scaling_signal(latest, backlog() if backlog else None)["wanted"])

    def _ask(self, command: str) -> None:
        """From the page's thread: the loop takes it at its next iteration."""
        self._commands.put(command)
        self._wake()

    def commands(self) -> list[str]:
        """What the status page asked since the last look (drain or resume), oldest first."""
        taken = []
        while not self._commands.empty():
            taken.append(self._commands.get_nowait())
        return taken

    def next_due(self) -> float:
        """When the next snapshot is due (monotonic)."""
        return self._published_at + PUBLISH_INTERVAL_S

    def due(self) -> bool:
        return time.monotonic() >= self.next_due()

    def publish(self, state: WorkerState) -> None:
        self._published_at = time.monotonic()
        self.latest = state
        publish_gauges(state)
        self.systemd.status(state.summary())
        self.systemd.watchdog()
        try:
            write_state(self.status_path, state)
        except OSError as exc:
            if not self._status_file_failed:
                log.warning("cannot write the status file", extra={"path": str(self.status_path), "error": str(exc)})
                self._status_file_failed = True

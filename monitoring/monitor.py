"""The supervisor loop's outlet for its state: once a second at most, the latest snapshot goes
to the status file, the gauges, systemd's STATUS line and its watchdog."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from monitoring.metrics import publish_gauges
from monitoring.server import MonitoringServer
from monitoring.state import WorkerState, write_state
from monitoring.systemd import SystemdNotifier

log = logging.getLogger(__name__)
PUBLISH_INTERVAL_S = 1.0


class Monitor:
    def __init__(self, status_path: Path, metrics_address: str = "127.0.0.1", metrics_port: int | None = None) -> None:
        self.status_path = status_path
        self.systemd = SystemdNotifier()
        self.latest: WorkerState | None = None
        self._published_at = 0.0
        self._status_file_failed = False
        self.server = (
            None if metrics_port is None else MonitoringServer(metrics_address, metrics_port, lambda: self.latest)
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

"""The sd_notify protocol: READY, STATUS, STOPPING and watchdog pings to systemd.

A datagram per message to the socket NOTIFY_SOCKET names (`@` for the abstract namespace).
Outside systemd (no NOTIFY_SOCKET) every call does nothing. Written here rather than taken
from a library: the protocol is a single sendto, and the Python bindings either need
libsystemd's headers to build or have been unmaintained for years.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.socket: socket.socket | None = None
        if self.address:
            self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # Ping at half the watchdog period, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval_s: float | None = None
        watchdog_usec, watchdog_pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
        if watchdog_usec and watchdog_usec.isdigit() and watchdog_pid in (None, "", str(os.getpid())):
            self.watchdog_interval_s = int(watchdog_usec) / 1e6 / 2
        self._last_ping = 0.0
        self._last_status: str | None = None
        self._failed = False

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")
        self._last_status = status

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._send(f"STATUS={text}")
            self._last_status = text

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=stopping")

    def watchdog(self) -> None:
        """A ping, when the service has a watchdog and half its period has passed."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s:
            self._send("WATCHDOG=1")
            self._last_ping = now

    def _send(self, message: str) -> None:
        if self.socket is None:
            return
        try:
            self.socket.sendto(message.encode(), self.address)
        except OSError as exc:
            if not self._failed:  # once: systemd going away must not flood the log
                log.warning("cannot notify systemd", extra={"socket": self.address, "error": str(exc)})
                self._failed = True

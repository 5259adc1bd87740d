"""How a helper thread is doing (for /healthz, the status command and a metric), and the body
that keeps one running through unexpected exceptions."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

RESTART_DELAYS_S = (0.5, 1, 2, 5, 10, 30)


class ThreadHealth:
    """A thread's body catches every exception, reports it here, and runs again after the
    returned delay; the thread counts as failing until an iteration goes through."""

    def __init__(self, name: str, count_failure: Callable[[str], None] | None = None) -> None:
        """`count_failure`: told the thread's name at each failure (the supervisor's metric)."""
        self.name = name
        self._count_failure = count_failure
        self._lock = threading.Lock()
        self._failures_in_row = 0
        self._last_error = ""

    def failed(self, exc: BaseException) -> float:
        """Record a failure; how long to wait before running the body again."""
        if self._count_failure is not None:
            self._count_failure(self.name)
        with self._lock:
            self._failures_in_row += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            return RESTART_DELAYS_S[min(self._failures_in_row, len(RESTART_DELAYS_S)) - 1]

    def succeeded(self) -> None:
        if self._failures_in_row:
            with self._lock:
                self._failures_in_row = 0

    def problem(self, alive: bool = True) -> str | None:
        if not alive:
            return f"the {self.name} thread is dead"
        with self._lock:
            if self._failures_in_row:
                return f"the {self.name} thread is failing ({self._failures_in_row} in a row; {self._last_error})"
        return None


def run_guarded(health: ThreadHealth, step: Callable[[], None], stopping: threading.Event, interval_s: float) -> None:
    """A helper thread's body: `step` every `interval_s` until `stopping` is set. An exception
    is logged with its traceback and counted, and the step runs again after a growing delay."""
    delay = interval_s
    while not stopping.wait(delay):
        try:
            step()
        except Exception as exc:
            delay = health.failed(exc)
            log.exception("a helper thread failed; restarting it", extra={"helper": health.name, "retry_in_s": delay})
            continue
        health.succeeded()
        delay = interval_s

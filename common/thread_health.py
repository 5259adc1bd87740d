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


def log_failure(health: ThreadHealth, exc: Exception) -> float:
    """A helper thread's step failed: counted in `health` and logged with its traceback.
    Returns how long to wait before the step runs again."""
    delay = health.failed(exc)
    fields = {"helper": health.name, "retry_in_s": delay}
    log.error("a helper thread failed; restarting it", exc_info=exc, extra=fields)
    return delay


def run_guarded(health: ThreadHealth, step: Callable[[], object], stopping: threading.Event, interval_s: float) -> None:
    """A helper thread's body: `step` every `interval_s` until `stopping` is set. An exception
    is logged with its traceback and counted, and the step runs again after a growing delay."""
    delay = interval_s
    while not stopping.wait(delay):
        try:
            step()
        except Exception as exc:
            delay = log_failure(health, exc)
            continue
        health.succeeded()
        delay = interval_s


class GuardedThread:
    """A helper thread whose `step` runs through `run_guarded` every `interval_s` until `stop`;
    with an interval of 0 the step waits by itself, e.g. on `wait_until_asked`. Its `problem`
    is what /healthz shows of it."""

    def __init__(
        self,
        name: str,
        step: Callable[[], object],
        interval_s: float = 0.0,
        count_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.health = ThreadHealth(name, count_failure)
        self.stopping = threading.Event()
        self._asked = threading.Event()
        self._thread = threading.Thread(
            target=run_guarded, args=(self.health, step, self.stopping, interval_s), name=name, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def ask(self) -> None:
        """Wake a step waiting in `wait_until_asked`."""
        self._asked.set()

    def wait_until_asked(self) -> bool:
        """For a step that works when asked: True once asked, False once stopping."""
        self._asked.wait()
        self._asked.clear()
        return not self.stopping.is_set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Set `stopping`, wake a waiting step, and wait up to `timeout_s` for the thread to end."""
        self.stopping.set()
        self._asked.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def problem(self) -> str | None:
        """Failing, or dead before it was stopped; nothing before it started."""
        started = self._thread.ident is not None
        alive = self._thread.is_alive() or not started or self.stopping.is_set()
        return self.health.problem(alive=alive)

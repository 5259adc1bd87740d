"""When to stop a job that outlives its wall-clock limit: SIGTERM at the deadline, then
SIGKILL after the kill grace. Shared by the runners, which differ only in how they signal."""

from __future__ import annotations

import signal


class StopSchedule:
    def __init__(self, started: float, timeout_s: float | None, kill_grace_s: float) -> None:
        self.deadline = None if timeout_s is None else started + timeout_s
        self.kill_grace_s = kill_grace_s
        self.kill_at: float | None = None

    def due(self, now: float) -> signal.Signals | None:
        """The signal to send at `now`, if any; each is given once."""
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None  # passed: no longer a time to wake up for
            self.kill_at = now + self.kill_grace_s
            return signal.SIGTERM
        if self.kill_at is not None and now >= self.kill_at:
            self.kill_at = None
            return signal.SIGKILL
        return None

    def stop_now(self, now: float) -> None:
        """Stop the job as if its deadline were now: SIGTERM, SIGKILL after the grace."""
        if self.kill_at is None:
            self.deadline = now

    def cancel(self) -> None:
        """The job was killed for another limit: the wall clock no longer applies."""
        self.deadline = None

    def next_time(self) -> float | None:
        """When `due` may next have a signal (None: never)."""
        times = [t for t in (self.deadline, self.kill_at) if t is not None]
        return min(times) if times else None

"""When and why the worker leaves: SIGTERM gives running jobs the shutdown grace; a notice
that the box goes (Spot, a lifecycle hook) gives them until `--notice-margin` before the box's
time, if it has one, and the results and deletes until shortly before it."""

from __future__ import annotations

from common.clock import Clock
from fleet.notices import Notice

OUTBOX_DRAIN_TIMEOUT_S = 30.0  # at exit, how long results and deletes still being retried may take
EXIT_MARGIN_S = 2.0  # a worker told when its box goes exits this long before


class Departure:
    def __init__(self, clock: Clock, notice_margin_s: float) -> None:
        self.clock = clock
        self.notice_margin_s = notice_margin_s
        self.reason = "sigterm"  # or the source of the notice that said the box goes
        self.stop_deadline: float | None = None  # monotonic: running jobs are interrupted then
        self.exit_by: float | None = None  # monotonic: when the box goes, if a notice said

    def signalled(self, grace_s: float) -> None:
        self._stop_by(self.clock.monotonic() + grace_s)

    def noticed(self, notice: Notice) -> None:
        self.reason = notice.source
        if notice.leave_by is not None:
            self.exit_by = self.clock.monotonic() + notice.leave_by - self.clock.time()
            self._stop_by(self.exit_by - self.notice_margin_s)

    def _stop_by(self, deadline: float) -> None:
        self.stop_deadline = deadline if self.stop_deadline is None else min(self.stop_deadline, deadline)

    def overdue(self) -> bool:
        return self.stop_deadline is not None and self.clock.monotonic() >= self.stop_deadline

    def outbox_time_left(self) -> float:
        """At exit, how long results and deletes may take: before the box goes, if it does."""
        if self.exit_by is None:
            return OUTBOX_DRAIN_TIMEOUT_S
        return max(0.0, min(OUTBOX_DRAIN_TIMEOUT_S, self.exit_by - EXIT_MARGIN_S - self.clock.monotonic()))

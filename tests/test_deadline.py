"""The wall-clock stop schedule both runners follow."""

from __future__ import annotations

import signal

from runners.deadline import StopSchedule


def test_sigterm_at_the_deadline_then_sigkill_after_the_grace() -> None:
    schedule = StopSchedule(started=100.0, timeout_s=10.0, kill_grace_s=2.0)
    assert (schedule.due(109.9), schedule.next_time()) == (None, 110.0)
    assert schedule.due(110.5) is signal.SIGTERM
    # The passed deadline is not a time to wake up for: waiting sleeps until the grace ends.
    assert schedule.next_time() == 112.5
    assert schedule.due(111.0) is None
    assert schedule.due(112.5) is signal.SIGKILL
    assert (schedule.due(200.0), schedule.next_time()) == (None, None)


def test_no_limit_and_cancelled_schedules_never_signal() -> None:
    assert StopSchedule(0.0, None, 2.0).due(1e9) is None
    cancelled = StopSchedule(0.0, 5.0, 2.0)
    cancelled.cancel()
    assert (cancelled.due(1e9), cancelled.next_time()) == (None, None)

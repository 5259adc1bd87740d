"""A guarded helper thread (common/thread_health.py): an exception is logged, counted and
shown, and the step runs again after a growing delay."""

from __future__ import annotations

import logging
import threading

import pytest

from common.thread_health import RESTART_DELAYS_S, GuardedThread, ThreadHealth, run_guarded
from testkit.waiting import wait_until


def test_a_failing_step_runs_again_and_is_shown_until_it_works(caplog: pytest.LogCaptureFixture) -> None:
    health = ThreadHealth("helper")
    stopping = threading.Event()
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError(f"failure {len(calls)}")
        stopping.set()

    with caplog.at_level(logging.ERROR):
        run_guarded(health, step, stopping, 0.0)
    assert len(calls) == 3
    assert health.problem() is None  # the third run went through
    failures = [record for record in caplog.records if record.getMessage() == "a helper thread failed; restarting it"]
    assert [getattr(record, "retry_in_s", None) for record in failures] == list(RESTART_DELAYS_S[:2])
    assert all(record.exc_info for record in failures)


def test_a_thread_shows_as_failing_then_dead() -> None:
    health = ThreadHealth("helper")
    stopping = threading.Event()

    def broken() -> None:
        raise RuntimeError("broken")

    thread = threading.Thread(target=run_guarded, args=(health, broken, stopping, 0.0), daemon=True)
    thread.start()
    problem = wait_until(health.problem, 10, "the failure shown")
    assert problem == "the helper thread is failing (1 in a row; RuntimeError: broken)"
    stopping.set()
    thread.join(5)
    assert health.problem(alive=False) == "the helper thread is dead"


def test_a_guarded_thread_works_when_asked_and_stops_while_waiting() -> None:
    asked: list[int] = []
    thread: GuardedThread

    def step() -> None:
        if thread.wait_until_asked():
            asked.append(1)

    thread = GuardedThread("helper", step)
    assert thread.problem() is None  # not started: nothing to report
    thread.start()
    thread.ask()
    wait_until(lambda: asked, 10, "the asked step")
    thread.stop()
    assert asked == [1] and thread.problem() is None

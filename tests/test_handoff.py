"""Handing a job to a child (pool/handoff.py) never blocks the supervisor's loop."""

from __future__ import annotations

import multiprocessing
import time

from pool.handoff import DIRECT_BYTES, hand_over
from pool.wire import JobAssignment


def test_a_body_larger_than_the_pipe_is_handed_over_without_waiting_for_the_reader() -> None:
    parent, child = multiprocessing.get_context("spawn").Pipe()
    big = JobAssignment("m1", "x" * (4 * DIRECT_BYTES * 8), 1)
    began = time.monotonic()
    hand_over(parent, big)  # nobody reads yet: a direct write of this size would block
    hand_over_s = time.monotonic() - began
    assert child.poll(10)
    assert child.recv() == big
    assert hand_over_s < 5  # returned before anything was read (the read above waited for it)


def test_a_hand_over_to_a_closed_pipe_is_not_the_loops_problem() -> None:
    parent, child = multiprocessing.get_context("spawn").Pipe()
    child.close()
    hand_over(parent, JobAssignment("m1", "small", 1))
    hand_over(parent, JobAssignment("m2", "x" * (2 * DIRECT_BYTES), 1))

"""The embedded queue's intake: woken by a send instead of waiting for its next poll, and
receiving as prefetch asks."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pool.holding.intake import POLL_WITH_WAKEUPS_S, PollingIntake
from pool.holding.prefetch import ReceiveRequest
from queues.local import LocalQueue


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[PollingIntake]:
    polling = PollingIntake(LocalQueue(tmp_path / "q.sqlite3"), visibility_timeout=60, poll_interval_s=0.02)
    polling.start()
    yield polling
    polling.join()


def test_a_send_wakes_the_intake_before_its_next_poll(intake: PollingIntake, tmp_path: Path) -> None:
    assert intake.wakeups is not None and intake.poll_interval_s == POLL_WITH_WAKEUPS_S
    intake.offer(ReceiveRequest(1, 0, 1))
    assert intake.take() == []  # the queue is empty: the next poll is a quarter second away
    next_poll = intake.next_due()
    assert next_poll is not None and next_poll > time.monotonic()
    LocalQueue(tmp_path / "q.sqlite3").send("job")  # another client, as `submit` is
    readable, _, _ = select.select([intake.wakeups.fileno()], [], [], 10)
    assert readable
    intake.woken()
    assert intake.next_due() == 0  # at once
    assert [message.body for message in intake.take()] == ["job"]


def test_the_intake_receives_held_messages_in_batches(intake: PollingIntake, tmp_path: Path) -> None:
    LocalQueue(tmp_path / "q.sqlite3").send_batch([f"job {index}" for index in range(20)])
    intake.offer(ReceiveRequest(0, 4, 5))  # four missing, fewer than a batch: not worth a receive
    assert intake.take() == []
    intake.offer(ReceiveRequest(1, 4, 5))  # an idle slot: at once, with the held ones
    assert len(intake.take()) == 5
    intake.offer(ReceiveRequest(0, 7, 5))
    assert len(intake.take()) == 7
    assert intake.take() == []  # all that was asked for came

"""Message custody (pool/holding/custody.py) on a real embedded queue: what is held, started, kept
hidden by the heartbeat, released, and kept in group order."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pool.holding.custody import Custody
from pool.holding.lanes import Held
from pool.settling.outbox import InlineOutbox
from queues.base import OutgoingMessage, ReceivedMessage
from queues.local import LocalQueue
from testkit.clock import FakeClock

VISIBILITY_S = 30.0


@pytest.fixture
def queue(tmp_path: Path) -> LocalQueue:
    return LocalQueue(tmp_path / "queue.sqlite3")


def received(queue: LocalQueue, *bodies: str, group: str | None = None) -> list[ReceivedMessage]:
    queue.send_batch([OutgoingMessage(body, group) for body in bodies])
    return queue.receive(len(bodies), 0, VISIBILITY_S)


def test_held_messages_start_in_order_and_one_job_of_a_group_at_a_time(queue: LocalQueue) -> None:
    custody = Custody(queue, InlineOutbox(), VISIBILITY_S)
    custody.hold(received(queue, "plain"))
    custody.hold([*received(queue, "g first", group="g")])
    assert [held.message.body for held in custody.startable()] == ["plain", "g first"]
    first = custody.start(custody.startable()[1])
    assert custody.busy_groups() == {"g"} and custody.holds_groups()
    assert [held.message.body for held in custody.startable()] == ["plain"]
    custody.finish(first)
    assert custody.busy_groups() == set()
    assert custody.held_count == 1 and [job.message.body for job in custody.running] == []


def test_a_redelivered_message_keeps_its_place_and_takes_the_new_receipt(queue: LocalQueue) -> None:
    custody = Custody(queue, InlineOutbox(), VISIBILITY_S)
    [message] = received(queue, "job")
    custody.hold([message])
    job = custody.start(custody.startable()[0])
    redelivered = ReceivedMessage(message.message_id, "new receipt", message.body, 2)
    assert custody.take_redelivered([redelivered]) == []
    assert job.message.receipt == "new receipt" and job.message.receive_count == 2
    [other] = received(queue, "other")
    assert custody.take_redelivered([other]) == [other]


def test_a_job_put_back_is_first_in_line_again(queue: LocalQueue) -> None:
    custody = Custody(queue, InlineOutbox(), VISIBILITY_S)
    custody.hold(received(queue, "a", "b"))
    job = custody.start(custody.startable()[0])
    custody.put_back(job)
    assert [held.message.body for held in custody.startable()] == ["a", "b"]
    assert custody.running == []


def test_released_messages_are_on_the_queue_again_at_once(queue: LocalQueue) -> None:
    custody = Custody(queue, InlineOutbox(), VISIBILITY_S)
    custody.hold(received(queue, "a", "b"))
    job = custody.start(custody.startable()[0])
    assert queue.receive(10, 0, VISIBILITY_S) == []
    custody.release_waiting("shutting down", "sigterm")
    custody.release_running(job, "interrupted", "sigterm")
    assert custody.held_count == 0 and custody.running == []
    assert sorted(message.body for message in queue.receive(10, 0, VISIBILITY_S)) == ["a", "b"]


def test_the_heartbeat_keeps_held_and_running_messages_hidden(queue: LocalQueue) -> None:
    visibility_s = 1.0
    custody = Custody(queue, InlineOutbox(), visibility_s)
    queue.send_batch(["a", "b"])
    custody.hold(queue.receive(2, 0, visibility_s))
    custody.start(custody.startable()[0])
    due = custody.next_due()
    assert due is not None and due <= time.monotonic() + visibility_s / 2
    deadline = time.monotonic() + 3 * visibility_s
    while time.monotonic() < deadline:  # past the first visibility timeout, twice over
        custody.extend_visibility()
        assert queue.receive(10, 0, visibility_s) == [], "a kept message came back"
        next_due = custody.next_due()
        assert next_due is not None
        time.sleep(max(0.0, min(next_due, deadline) - time.monotonic()))


def test_a_retried_job_sends_its_group_mates_back_behind_it(queue: LocalQueue) -> None:
    custody = Custody(queue, InlineOutbox(), VISIBILITY_S)
    queue.send_batch([OutgoingMessage(body, "g") for body in ("g1", "g2")] + [OutgoingMessage("other", "h")])
    # The embedded queue lets one message of a group out at a time; hold what a worker would.
    custody.hold(queue.receive(10, 0, VISIBILITY_S))
    job = custody.start(next(h for h in custody.startable() if h.message.body == "g1"))
    custody.lanes.add([Held(ReceivedMessage("m-g2", "1:x", "g2", 1, group_id="g"), time.monotonic() + VISIBILITY_S)])
    custody.finish(job)
    custody.keep_group_order(job.message, final=False)
    assert [held.message.body for held in custody.lanes] == ["other"]
    custody.keep_group_order(custody.lanes.take_all()[0], final=True)  # final: nothing moves


def native_job(service: str) -> str:
    return json.dumps({"service": service, "queue": "native", "command": {"arguments": []}})


def test_a_capped_service_starts_no_more_than_its_cap_and_the_others_pass_it_by(queue: LocalQueue) -> None:
    custody = Custody(queue, InlineOutbox(), VISIBILITY_S, caps={"gdal": 1})
    queue.send_batch([native_job("gdal"), native_job("gdal"), native_job("gdal"), native_job("wc"), "not json"])
    custody.hold(queue.receive(10, 0, VISIBILITY_S))
    first, *_ = custody.startable()
    assert [json.loads(h.message.body)["service"] for h in custody.startable()[:2]] == ["gdal", "wc"]
    running = custody.start(first)
    assert running.service == "gdal"
    assert [h.message.body for h in custody.startable()] == [native_job("wc"), "not json"]
    assert custody.startable_and_blocked()[1] == 2  # the two other gdal jobs wait for the running one
    custody.finish(running)
    assert custody.startable_and_blocked()[1] == 1
    assert custody.startable()[0].message.body == native_job("gdal")


def test_without_caps_no_body_is_read(queue: LocalQueue) -> None:
    custody = Custody(queue, InlineOutbox(), VISIBILITY_S)
    custody.hold(received(queue, native_job("gdal")))
    assert [held.service for held in custody.lanes] == [None] and custody.startable_and_blocked()[1] == 0


def test_the_heartbeat_is_due_at_half_the_visibility_on_the_custodys_clock(queue: LocalQueue) -> None:
    clock = FakeClock()
    custody = Custody(queue, InlineOutbox(), VISIBILITY_S, clock=clock)
    custody.hold(received(queue, "long job"))
    job = custody.start(custody.startable()[0])
    assert custody.next_due() == clock.monotonic() + VISIBILITY_S / 2
    clock.advance(VISIBILITY_S / 2 - 1)
    custody.extend_visibility()
    assert job.visible_until == 1000.0 + VISIBILITY_S  # not due yet: nothing asked of the queue
    clock.advance(1)
    custody.extend_visibility()
    assert job.visible_until == clock.monotonic() + VISIBILITY_S
    assert custody.next_due() == clock.monotonic() + VISIBILITY_S / 2

"""Passing on a job this box can never run: each step of a pass, its faults, and what the
loop settles itself (a job no shape fits, one that waited too long), against fakes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.shapes import LiveBox, Shape
from journal.fleet_table import Wait
from journal.job_table import TableUnreachable
from pool.holding.lanes import Held
from pool.holding.passing_on import FIRST_DELAY_S, PassingOn, PassingOnSettings
from pool.outcomes import OutcomePolicy
from protocol.body import read_addressing
from queues.base import DeliveryProfile, OutgoingMessage, QueueError, ReceivedMessage, VisibilityChange

GIB = 1024**3
SMALL, BIG = Shape("small", GIB, 2), Shape("big", 3 * GIB, 4)


@dataclass
class FakeQueue:
    spec: str = "fake"
    delays: bool = True
    sent: list[OutgoingMessage] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    hidden: list[VisibilityChange] = field(default_factory=list)

    @property
    def profile(self) -> DeliveryProfile:
        return DeliveryProfile(False, 0.0, False, True, delays_messages=self.delays)

    def job_message(self, body: str, group: str | None, job_id: str | None) -> OutgoingMessage:
        return OutgoingMessage(body, group)

    def send(self, message: OutgoingMessage) -> str:
        self.sent.append(message)
        return "copy"

    def delete(self, receipts: list[str]) -> None:
        self.deleted += receipts

    def change_visibility(self, changes: list[VisibilityChange]) -> None:
        self.hidden += changes


@dataclass
class FakeMarks:
    wait: Wait = field(default_factory=Wait)
    down: bool = False
    marked: list[tuple[Any, ...]] = field(default_factory=list)

    def wait_of(self, job_id: str) -> Wait:
        if self.down:
            raise TableUnreachable("job table t: get_item failed: connection refused")
        return self.wait

    def passed(self, job_id: str, message_id: str | None, shape: str, handed_on: str | None) -> None:
        self.marked.append((job_id, message_id, shape, handed_on))


@dataclass
class FakeOutbox:
    calls: list[Any] = field(default_factory=list)

    def submit(self, name: str, call: Any, deadline: float, *, ordered: bool = True) -> None:
        self.calls.append(call)


@dataclass
class FakeLedger:
    added: list[Any] = field(default_factory=list)

    def add(self, outcome: Any, visible_until: float) -> None:
        self.added.append(outcome)


def passing(
    queue: FakeQueue,
    marks: FakeMarks,
    *,
    hand_on: FakeQueue | None = None,
    max_wait_s: float | None = 3600,
    live: list[LiveBox] | None = None,
) -> tuple[PassingOn, FakeOutbox, FakeLedger]:
    outbox, ledger = FakeOutbox(), FakeLedger()
    part = PassingOn(
        PassingOnSettings(SMALL, (BIG,), hand_on, max_wait_s),  # type: ignore[arg-type]
        queue=queue,  # type: ignore[arg-type]
        outbox=outbox,  # type: ignore[arg-type]
        ledger=ledger,  # type: ignore[arg-type]
        policy=OutcomePolicy(max_attempts=3, retry_delay_s=1, dead_letter=False),
        marks=marks,  # type: ignore[arg-type]
        others=lambda: list(live or []),
    )
    return part, outbox, ledger


def held(memory: str, **fields: Any) -> Held:
    body = {"service": "tool", "queue": "native", "command": {}, "resources": {"memory": memory}, **fields}
    return Held(ReceivedMessage("m-1", "r-1", json.dumps(body), 1), time.monotonic() + 60)


def take(part: PassingOn, message: Held) -> bool:
    return part.takes(message, read_addressing(message.message.body))


def test_a_job_that_fits_here_is_not_taken() -> None:
    part, outbox, _ = passing(FakeQueue(), FakeMarks())
    assert not take(part, held("512M"))
    assert not take(part, held("2G", test=True))  # a test message is answered here, whatever it asks
    assert outbox.calls == []


def test_a_pass_sends_a_delayed_copy_with_the_job_id_then_marks_then_deletes() -> None:
    queue, marks = FakeQueue(), FakeMarks()
    part, outbox, _ = passing(queue, marks)
    assert take(part, held("2G"))
    outbox.calls[0]()
    assert [json.loads(copy.body)["id"] for copy in queue.sent] == ["m-1"]  # the message id, now explicit
    assert queue.sent[0].delay_s == FIRST_DELAY_S
    assert marks.marked == [("m-1", "m-1", "big", None)] and queue.deleted == ["r-1"]
    part.tick()
    assert part.waiting_for() == {"big": 1}


def test_each_pass_waits_twice_as_long() -> None:
    queue = FakeQueue()
    part, outbox, _ = passing(queue, FakeMarks(Wait(since=time.time(), passed_on=frozenset({"a", "b"}))))
    take(part, held("2G", id="job"))
    outbox.calls[0]()
    assert queue.sent[0].delay_s == FIRST_DELAY_S * 4


def test_while_a_live_box_fits_the_job_it_is_seen_again_soon() -> None:
    queue = FakeQueue()
    big_box = LiveBox("host/big/1", Shape.sized(3 * GIB, 4), ("native",), (), False, time.time() + 60)
    marks = FakeMarks(Wait(since=time.time(), passed_on=frozenset({"a", "b"})))
    part, outbox, _ = passing(queue, marks, live=[big_box])
    take(part, held("2G", id="job"))
    outbox.calls[0]()
    assert queue.sent[0].delay_s == FIRST_DELAY_S


def test_a_message_passed_on_before_is_only_deleted() -> None:
    queue = FakeQueue()
    part, outbox, _ = passing(queue, FakeMarks(Wait(since=time.time(), passed_on=frozenset({"m-1"}))))
    take(part, held("2G"))
    outbox.calls[0]()
    assert (queue.sent, queue.deleted) == ([], ["r-1"])


def test_a_job_handed_on_goes_once_without_delay() -> None:
    queue, big_queue, marks = FakeQueue(), FakeQueue(spec="big-jobs"), FakeMarks()
    part, outbox, _ = passing(queue, marks, hand_on=big_queue)
    take(part, held("2G", id="job"))
    outbox.calls[0]()
    assert [copy.delay_s for copy in big_queue.sent] == [0.0] and queue.sent == []
    assert marks.marked == [("job", "m-1", "big", "big-jobs")]
    marks.wait = Wait(since=time.time(), handed_on="big-jobs")
    outbox.calls[0]()  # its redelivery, say
    assert len(big_queue.sent) == 1 and queue.deleted == ["r-1", "r-1"]


def test_on_a_fifo_queue_the_message_itself_waits_hidden() -> None:
    queue, marks = FakeQueue(delays=False), FakeMarks()
    part, outbox, _ = passing(queue, marks)
    take(part, held("2G", id="job"))
    outbox.calls[0]()
    assert queue.sent == [] and queue.deleted == []
    assert queue.hidden == [VisibilityChange("r-1", FIRST_DELAY_S)]
    assert marks.marked == [("job", None, "big", None)]  # no message marked: its redelivery is passed again


def test_a_table_that_cannot_be_read_fails_the_pass_as_a_queue_error_to_retry() -> None:
    queue = FakeQueue()
    part, outbox, _ = passing(queue, FakeMarks(down=True))
    take(part, held("2G"))
    with pytest.raises(QueueError, match="connection refused"):
        outbox.calls[0]()
    assert (queue.sent, queue.deleted) == ([], [])


def test_a_job_that_waited_too_long_ends_as_no_capacity() -> None:
    queue = FakeQueue()
    part, outbox, ledger = passing(queue, FakeMarks(Wait(since=time.time() - 10)), max_wait_s=5)
    take(part, held("2G", id="job", reply_to="replies"))
    outbox.calls[0]()
    assert queue.sent == [] and ledger.added == []
    part.tick()
    (outcome,) = ledger.added
    result = json.loads(outcome.result_json)
    assert (outcome.final, result["status"], result["id"], outcome.reply_to) == (True, "error", "job", "replies")
    assert result["error"]["type"] == "no_capacity" and "for a box of shape big" in result["error"]["message"]


def test_a_job_no_shape_fits_is_rejected_at_once() -> None:
    part, outbox, ledger = passing(FakeQueue(), FakeMarks())
    assert take(part, held("8G", id="job"))
    assert outbox.calls == []
    result = json.loads(ledger.added[0].result_json)
    assert result["status"] == "rejected"
    assert result["error"]["message"] == (
        "resources.memory: asks for 8 GiB of memory, the largest shape has 3 GiB (shape big): "
        "no box of the fleet can run it"
    )


def test_an_invalid_body_is_left_to_its_child() -> None:
    part, outbox, ledger = passing(FakeQueue(), FakeMarks())
    message = held("2G", command="not an object")
    assert not take(part, message)
    assert outbox.calls == [] and ledger.added == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)

ASKS = st.sampled_from(["2G", "8G", "512M", 5 * GIB, 3, 64, 1])


@settings(max_examples=300, deadline=None)
@given(
    resources=JSON | st.dictionaries(st.sampled_from(["memory", "cpus", "gpus", "disk"]), JSON | ASKS),
    extra=st.dictionaries(st.sampled_from(["id", "queue", "service", "test", "x"]), JSON),
)
def test_no_body_makes_a_pass_raise(resources: object, extra: dict[str, object]) -> None:
    queue = FakeQueue()
    part, outbox, _ = passing(queue, FakeMarks())
    body = {"service": "tool", "queue": "native", "command": {}, "resources": resources, **extra}
    message = Held(ReceivedMessage("m-1", "r-1", json.dumps(body), 1), time.monotonic() + 60)
    assert take(part, message) in (True, False)
    for call in outbox.calls:
        call()
    for copy in queue.sent:
        assert json.loads(copy.body)["id"] == (extra.get("id") or "m-1")

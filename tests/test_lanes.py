"""Lanes (pool/holding/lanes.py): received messages wait in receive order; one job of a group at a time."""

from __future__ import annotations

from pool.holding.lanes import Held, Lanes
from queues.base import ReceivedMessage


def message(name: str, group: str | None = None) -> ReceivedMessage:
    return ReceivedMessage(name, f"receipt-{name}", name, 1, group_id=group)


def bodies(lanes: Lanes, busy: set[str] | None = None) -> list[str]:
    return [held.message.body for held in lanes.startable(busy or set())]


def test_the_first_of_each_idle_group_and_every_ungrouped_message_may_start() -> None:
    lanes = Lanes()
    lanes.add(
        Held(m, 10.0) for m in [message("a1", "a"), message("x"), message("a2", "a"), message("b1", "b"), message("y")]
    )
    assert bodies(lanes) == ["a1", "x", "b1", "y"]
    assert bodies(lanes, {"a"}) == ["x", "b1", "y"]
    lanes.take(lanes.startable(set())[0])
    assert bodies(lanes) == ["x", "a2", "b1", "y"]


def test_a_put_back_message_is_first_and_a_group_can_be_taken_out_of_line() -> None:
    lanes = Lanes()
    lanes.add(Held(m, 10.0) for m in [message("a1", "a"), message("x"), message("a2", "a")])
    lanes.put_back(Held(message("first"), 5.0))
    assert bodies(lanes)[0] == "first" and next(iter(lanes)).visible_until == 5.0
    assert [m.body for m in lanes.take_group("a")] == ["a1", "a2"]
    assert [m.body for m in lanes.take_all()] == ["first", "x"] and len(lanes) == 0

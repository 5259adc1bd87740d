"""Received messages waiting for a slot, in the order they were received. A message of a
message group (an SQS FIFO group, or a group on the embedded queue) waits in its group's lane
behind the group's running job and its earlier messages: one job of a group runs at a time, in
order, while different groups run side by side."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pool.admission import NOTHING, Reservation
from queues.base import ReceivedMessage


@dataclass
class Held:
    message: ReceivedMessage
    visible_until: float  # monotonic time its visibility lapses unless extended
    service: str | None = None  # a service whose running jobs are capped (`max-running`), if any
    reservation: Reservation = NOTHING  # what it will run under, against the box's capacity
    held_since: float = field(default_factory=time.monotonic)


class Lanes:
    def __init__(self) -> None:
        self._held: list[Held] = []

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[Held]:
        return iter(self._held)

    def add(self, held: Iterable[Held]) -> None:
        self._held += held

    def put_back(self, held: Held) -> None:
        """A job handed back before it started (its child never took it): first in line again."""
        self._held.insert(0, held)

    def startable(self, busy_groups: set[str]) -> list[Held]:
        """The messages that could start now, in order: those of no group, and the first of
        each group with no job running."""
        found, seen = [], set(busy_groups)
        for held in self._held:
            group = held.message.group_id
            if group is None:
                found.append(held)
            elif group not in seen:
                seen.add(group)
                found.append(held)
        return found

    def take(self, held: Held) -> None:
        self._held.remove(held)

    def take_group(self, group_id: str) -> list[ReceivedMessage]:
        """Every message of the group, out of line (to be released)."""
        taken = [held.message for held in self._held if held.message.group_id == group_id]
        self._held = [held for held in self._held if held.message.group_id != group_id]
        return taken

    def take_all(self) -> list[ReceivedMessage]:
        taken, self._held = [held.message for held in self._held], []
        return taken

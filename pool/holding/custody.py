"""Message custody: every message this worker holds between its receipt and its settlement.

A received message is held in its lane until a slot takes it, then runs; meanwhile the
heartbeat keeps it hidden from other workers, and on shutdown (or when an earlier job of its
group is retried) a held message goes back to the queue at once. Custody knows messages, never
processes: which child runs a job is the slot table's business.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial

from common.clock import SYSTEM_CLOCK, Clock
from monitoring.metrics import record_released
from pool.admission import NOTHING, Admission, Reservation, total
from pool.holding.lanes import Held, Lanes
from pool.settling.outbox import Outbox
from protocol.body import Addressing, read_addressing
from protocol.result import Progress
from queues.base import JobQueue, ReceivedMessage, VisibilityChange

log = logging.getLogger(__name__)


@dataclass
class Running:
    """A message whose job a slot was given."""

    message: ReceivedMessage
    visible_until: float  # monotonic time its visibility lapses unless extended
    service: str | None = None  # a service whose running jobs are capped, if it is one
    reservation: Reservation = NOTHING  # what it runs under, against the box's capacity
    gpus: tuple[str, ...] = ()  # the devices it was given
    started: float = field(default_factory=time.monotonic)
    confirmed: bool = False  # its child said it took the job
    progress: Progress | None = None  # the latest its job reported (a request with events)

    def log_fields(self, job_id: str | None = None, service: str | None = None) -> dict[str, object]:
        """The fields every log line about a job carries (the child adds them to its own lines)."""
        return {
            "job_id": job_id or self.message.message_id,
            "message_id": self.message.message_id,
            "attempt": self.message.receive_count,
            "service": service,
        }


class Custody:
    def __init__(
        self,
        queue: JobQueue,
        outbox: Outbox,
        visibility_timeout: float,
        caps: Mapping[str, int] | None = None,
        admission: Admission | None = None,
        *,
        pass_on: Callable[[Held, Addressing], bool] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`caps`: the most jobs of a native service that may run at once, by service;
        `admission`: the box's capacity, which running jobs' reservations must fit;
        `pass_on`: takes a message just received that this box can never run, if the fleet
        has another place for it (True: taken)."""
        self.clock = clock
        self.pass_on = pass_on
        self.queue = queue
        self.outbox = outbox
        self.visibility_timeout = visibility_timeout
        self.caps = dict(caps or {})
        self.admission = admission
        self.lanes = Lanes()  # received, not yet started
        self.running: list[Running] = []

    @property
    def held_count(self) -> int:
        """Messages received and waiting for a slot."""
        return len(self.lanes)

    def kept_visible(self) -> Iterator[Running | Held]:
        """Every message this worker keeps hidden: running jobs and waiting ones."""
        yield from self.running
        yield from self.lanes

    def busy_groups(self) -> set[str]:
        return {job.message.group_id for job in self.running if job.message.group_id}

    def holds_groups(self) -> bool:
        """Whether a message group is locked by a message this worker holds (running or waiting)."""
        return any(kept.message.group_id for kept in self.kept_visible())

    def eligible_and_startable(self) -> tuple[list[Held], list[Held]]:
        """The held messages whose group's turn it is, and of them, in order, those their
        service's cap and the box's capacity let start now: one pass over the lanes."""
        eligible = self.lanes.startable(self.busy_groups())
        return eligible, self._admitted(eligible)

    def startable_and_blocked(self) -> tuple[list[Held], int]:
        """What may start now, and how many more could but for a cap or the box's capacity."""
        eligible, startable = self.eligible_and_startable()
        return startable, len(eligible) - len(startable)

    def startable(self) -> list[Held]:
        """What may start now, in order: the first of each idle group, and no more of a capped
        service's jobs than its cap leaves room for (the others pass them by)."""
        return self.eligible_and_startable()[1]

    def _admitted(self, found: list[Held]) -> list[Held]:
        """Of `found`, in order, those their service's cap and the box's capacity let start."""
        if not found or (not self.caps and self.admission is None):
            return found
        room = self._room()
        reserved = total(job.reservation for job in self.running)
        startable = []
        for held in found:
            if held.service is not None and room[held.service] <= 0:
                continue
            if self.admission is not None and not self.admission.fits(reserved, held.reservation):
                continue
            if held.service is not None:
                room[held.service] -= 1
            reserved = reserved.plus(held.reservation)
            startable.append(held)
        return startable

    def _room(self) -> Counter[str]:
        if not self.caps:
            return Counter()
        room = Counter(self.caps)
        room.subtract(job.service for job in self.running if job.service is not None)
        return room

    def hold(self, messages: list[ReceivedMessage]) -> None:
        visible_until = self.clock.monotonic() + self.visibility_timeout
        kept = []
        for message in messages:
            held, found = self._held(message, visible_until)
            if found is None or self.pass_on is None or not self.pass_on(held, found):
                kept.append(held)
        self.lanes.add(kept)

    def _held(self, message: ReceivedMessage, visible_until: float) -> tuple[Held, Addressing | None]:
        """Its capped service and reservation, from one cheap read of its body (returned too),
        and only where a cap or the box's capacity may apply."""
        if (not self.caps and self.admission is None) or message.defect is not None:
            return Held(message, visible_until, held_since=self.clock.monotonic()), None
        found = read_addressing(message.body)
        service = found.native_service()
        reservation = NOTHING if self.admission is None else self.admission.reservation(found)
        capped = service if service in self.caps else None
        return Held(message, visible_until, capped, reservation, held_since=self.clock.monotonic()), found

    def take_redelivered(self, messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
        """The messages that are new here. A redelivery of one running or waiting here is not:
        the job keeps its place and takes the new receipt."""
        kept = {kept.message.message_id: kept for kept in self.kept_visible()}
        fresh = []
        for message in messages:
            holder = kept.get(message.message_id)
            if holder is None:
                fresh.append(message)
                continue
            if isinstance(holder, Running):
                log.warning(
                    "message redelivered while its job runs here; the job takes the new receipt",
                    extra=holder.log_fields(),
                )
            else:
                log.warning(
                    "message redelivered while it waits here; it keeps its place and takes the new receipt",
                    extra={"message_id": message.message_id, "attempt": message.receive_count},
                )
            holder.message = message
            holder.visible_until = self.clock.monotonic() + self.visibility_timeout
        return fresh

    def start(self, held: Held) -> Running:
        self.lanes.take(held)
        job = Running(held.message, held.visible_until, held.service, held.reservation, started=self.clock.monotonic())
        if self.admission is not None and held.reservation.gpus:
            job.gpus = self.admission.take_gpus(held.reservation.gpus)
        self.running.append(job)
        return job

    def finish(self, job: Running) -> None:
        self.running.remove(job)
        if self.admission is not None and job.gpus:
            self.admission.give_back(job.gpus)

    def put_back(self, job: Running) -> None:
        """A job handed back before it started (its child never took it): first in line again."""
        self.finish(job)
        now = self.clock.monotonic()
        self.lanes.put_back(Held(job.message, job.visible_until, job.service, job.reservation, held_since=now))

    def release(
        self, messages: list[ReceivedMessage], why: str, *, after_s: float = 0.0, reason: str = "other"
    ) -> None:
        """Back to the queue, for this worker or another: at once, or once hidden for `after_s`;
        counted by `reason`, a short label."""
        if not messages:
            return
        record_released(reason, len(messages))
        changes = [VisibilityChange(m.receipt, after_s) for m in messages]
        log.info("releasing messages", extra={"count": len(messages), "reason": why, "hidden_s": round(after_s, 1)})
        deadline = self.clock.monotonic() + self.visibility_timeout
        self.outbox.submit(
            f"release {len(messages)} messages", partial(self.queue.change_visibility, changes), deadline
        )

    def release_waiting(self, why: str, reason: str) -> None:
        self.release(self.lanes.take_all(), why, reason=reason)

    def release_running(self, job: Running, why: str, reason: str) -> None:
        self.finish(job)
        self.release([job.message], why, reason=reason)

    def keep_group_order(self, message: ReceivedMessage, final: bool) -> None:
        """A job of a group that is to be retried comes back first: the group's later messages
        held here go back to the queue at once, behind it (its retry delay keeps the group
        locked on the queue until then)."""
        if message.group_id is not None and not final:
            self.release(
                self.lanes.take_group(message.group_id),
                "an earlier job of their group is retried",
                reason="group-order",
            )

    # --- visibility heartbeat ---------------------------------------------------------

    def extend_visibility(self) -> None:
        """Messages whose visibility is half over are hidden for another full timeout."""
        now = self.clock.monotonic()
        margin = self.visibility_timeout / 2
        due = [kept for kept in self.kept_visible() if kept.visible_until - now <= margin]
        if not due:
            return
        changes = [VisibilityChange(kept.message.receipt, self.visibility_timeout) for kept in due]
        # Retried (remote queues) until the current window closes; then the messages come back.
        deadline = min(kept.visible_until for kept in due)
        self.outbox.submit("extend visibility", partial(self.queue.change_visibility, changes), deadline)
        for kept in due:
            kept.visible_until = now + self.visibility_timeout

    def next_due(self) -> float | None:
        """When the heartbeat is next due (monotonic), if anything is held."""
        margin = self.visibility_timeout / 2
        return min((kept.visible_until - margin for kept in self.kept_visible()), default=None)

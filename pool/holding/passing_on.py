"""Jobs this box can never run. One that another shape of the fleet can run (a live box's, or
one `--fleet-shapes` declares) is passed on without spending its attempts: a copy goes back
to the queue, delayed by a back-off, or once to `--hand-on`, and the message is deleted; the
job's item in the table keeps when its wait began, and after `--max-wait-for-capacity` the
job ends `error` (`no_capacity`), naming the shape it waited for. One no shape can run is
`rejected` at once, naming per dimension what it asks and what the largest shape has.

The table is read and the copy sent on the outbox's threads; the loop settles the jobs given
up on at its next tick."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from common.clock import SYSTEM_CLOCK, Clock
from fleet.shapes import FitsNoShape, LiveBox, Shape, WaitFor, ask_of, place
from journal.fleet_table import WaitMarks
from journal.job_table import TableUnreachable
from monitoring.metrics import record_released, set_jobs_waiting_for_shape
from pool.holding.lanes import Held
from pool.outcomes import OutcomePolicy
from pool.settling.ledger import Ledger
from pool.settling.outbox import Outbox
from protocol.body import Addressing, Envelope, decode_body
from protocol.result import ErrorInfo, Status
from queues.base import JobQueue, OutgoingMessage, QueueError, VisibilityChange

log = logging.getLogger(__name__)
FIRST_DELAY_S = 5.0  # before a passed-on job is seen again; doubles with each pass unless a live box fits it
MAX_DELAY_S = 60.0
SEEN_WAITING_S = 90.0  # a job passed on counts as waiting (for /scaling) this long beyond its delay


@dataclass(frozen=True)
class PassingOnSettings:
    here: Shape  # this box
    declared: tuple[Shape, ...]  # --fleet-shapes
    hand_on: JobQueue | None  # --hand-on: where a job for another shape goes, once
    max_wait_s: float | None  # --max-wait-for-capacity


@dataclass(frozen=True)
class _GivenUp:
    held: Held
    shape: str
    waited_s: float


class PassingOn:
    def __init__(
        self,
        settings: PassingOnSettings,
        *,
        queue: JobQueue,
        outbox: Outbox,
        ledger: Ledger,
        policy: OutcomePolicy,
        marks: WaitMarks,
        others: Callable[[], list[LiveBox]],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`others`: the other live boxes of the queue."""
        self.settings = settings
        self.queue = queue
        self.outbox = outbox
        self.ledger = ledger
        self.policy = policy
        self.marks = marks
        self.others = others
        self.clock = clock
        self._lock = threading.Lock()
        self._given_up: list[_GivenUp] = []
        self._waiting: dict[str, tuple[str, float]] = {}  # job id: (shape, counted until, monotonic)
        self._published: dict[str, int] = {}  # what the gauges say

    def takes(self, held: Held, found: Addressing) -> bool:
        """Whether it took a message just received: one that can never run here, when the
        fleet has a shape for it or none at all; else it is held here as any other."""
        ask = ask_of(found.resources)
        if ask.fits(self.settings.here):
            return False
        here, declared = self.settings.here, self.settings.declared
        answer = place(ask, here, self.others(), declared, kind=found.queue, service=found.service)
        decoded = decode_body(held.message.body)
        if answer is None or decoded.request is None or decoded.request.test:
            return False  # its child rejects it, naming what is wrong, or answers that it is alive
        job_id = decoded.envelope.id or held.message.message_id
        if isinstance(answer, FitsNoShape):
            rejection = ErrorInfo("invalid_request", f"{answer.field}: {answer.text}")
            self._settle(held, Status.REJECTED, rejection, decoded.envelope)
            return True
        self._wait(held, job_id, answer)
        return True

    def _wait(self, held: Held, job_id: str, answer: WaitFor) -> None:
        message, shape = held.message, answer.shape.name
        fields = {"job_id": job_id, "message_id": message.message_id, "shape": shape}
        log.info("job too big for this box: passed on to wait for a shape that fits it", extra=fields)
        body = held.message.body if job_id != message.message_id else _with_id(message.body, job_id)
        self._waiting[job_id] = (shape, self.clock.monotonic() + MAX_DELAY_S + SEEN_WAITING_S)
        record_released("wait-for-shape", 1)
        call = _PassOn(self, held, job_id, shape, body, answer.live)
        self.outbox.submit(f"pass on job {job_id}", call, held.visible_until, ordered=False)

    def _settle(self, held: Held, status: Status, error: ErrorInfo, envelope: Envelope | None = None) -> None:
        envelope = envelope or decode_body(held.message.body).envelope
        outcome, result = self.policy.decided_here(held.message, envelope, status, error)
        log.info("job settled without running", extra=result.summary())
        self.ledger.add(outcome, held.visible_until)

    def gave_up(self, held: Held, shape: str, waited_s: float) -> None:
        """From an outbox thread: the job waited its longest; the loop settles it."""
        with self._lock:
            self._given_up.append(_GivenUp(held, shape, waited_s))

    # --- as an upkeep part ---------------------------------------------------------------

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def next_due(self) -> float | None:
        return None

    def problem(self) -> str | None:
        return None

    def tick(self) -> None:
        with self._lock:
            given_up, self._given_up = self._given_up, []
        for ended in given_up:
            wait = f"waited {ended.waited_s:.0f} s for a box of shape {ended.shape} (--max-wait-for-capacity)"
            self._settle(ended.held, Status.ERROR, ErrorInfo("no_capacity", f"{wait}; none took it"))
        if self._waiting:
            now = self.clock.monotonic()
            self._waiting = {job: seen for job, seen in self._waiting.items() if seen[1] > now}
        counts = self.waiting_for()
        if counts != self._published:  # the loop ticks on every turn: the gauges change rarely
            set_jobs_waiting_for_shape(counts)
            self._published = counts

    def waiting_for(self) -> dict[str, int]:
        """The jobs passed on lately, by the shape they wait for."""
        now = self.clock.monotonic()
        return dict(Counter(shape for shape, until in self._waiting.values() if until > now))


@dataclass(frozen=True)
class _PassOn:
    """One job's pass, on an outbox thread; made again from the start if a step fails."""

    passing: PassingOn
    held: Held
    job_id: str
    shape: str
    body: str
    live: bool  # a box up now fits it: it is seen again soon, not later each time

    def __call__(self) -> None:
        try:
            self._pass_on()
        except TableUnreachable as exc:
            raise QueueError(str(exc), operation="job table") from exc

    def _pass_on(self) -> None:
        passing, message = self.passing, self.held.message
        settings, queue = passing.settings, passing.queue
        wait = passing.marks.wait_of(self.job_id)
        if message.message_id in wait.passed_on or (settings.hand_on is not None and wait.handed_on is not None):
            queue.delete([message.receipt])  # its copy went out before
            return
        waited_s = time.time() - wait.since if wait.since is not None else 0.0
        if settings.max_wait_s is not None and waited_s >= settings.max_wait_s:
            passing.gave_up(self.held, self.shape, waited_s)
            return
        passes = 0 if self.live else len(wait.passed_on)
        delay = min(MAX_DELAY_S, FIRST_DELAY_S * 2**passes)
        if settings.hand_on is None and not queue.profile.delays_messages:
            # A FIFO queue: the message itself waits, hidden (each wait spends a receive).
            passing.marks.passed(self.job_id, None, self.shape, None)
            queue.change_visibility([VisibilityChange(message.receipt, delay)])
            return
        target = settings.hand_on or queue
        copy = _copy(target, self.body, message.group_id, self.job_id)
        target.send(copy if settings.hand_on is not None else replace(copy, delay_s=delay))
        passing.marks.passed(self.job_id, message.message_id, self.shape, target.spec if settings.hand_on else None)
        queue.delete([message.receipt])


def _with_id(body: str, job_id: str) -> str:
    """The body with its job id made explicit: its copy keeps the id the message gave it."""
    data = json.loads(body)
    return json.dumps({**data, "id": job_id}, separators=(",", ":"), ensure_ascii=False)


def _copy(target: JobQueue, body: str, group: str | None, job_id: str) -> OutgoingMessage:
    """The job's copy for `target`, in its message group where the target has groups."""
    try:
        return target.job_message(body, group, job_id)
    except ValueError:  # a group for a queue without groups, or an id that cannot be one
        return target.job_message(body, None, None)

"""The supervisor: one loop that orchestrates the parts it is given.

It owns signals and the loop. The slot table owns the child processes, custody the messages
held, the outcome policy what a job's end means, the ledger and courier its journaling and
delivery, intake and outbox the queue calls. Signal handlers only record the signal and wake
the loop; every action happens in the loop, which waits on the wake pipe, the queue's wake-ups
and the children's pipes and exits until the earliest part says it is due.
"""

from __future__ import annotations

import logging
import selectors
import signal
from collections.abc import Callable
from types import FrameType

from common import faults
from fleet.notices import Notice
from monitoring.metrics import record_interruption
from monitoring.monitor import DRAIN
from monitoring.state import WorkerState
from pool.departure import Departure
from pool.holding.prefetch import NOTHING_WANTED, ReceiveRequest
from pool.parts import SupervisorParts, SupervisorSettings, TimedPart
from pool.recovery import clean_up_previous_run
from pool.settling.courier import Parcel
from pool.slots import Slot
from pool.snapshot import worker_state
from pool.wire import ChildReady, FromChild, JobEnd, JobEventNote, TableNote
from queues.base import ReceivedMessage
from runners.pulls import PullNote

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_BOOT_FAILURE = 3
EXIT_LOOP_FAILURE = 4
STALL_FAULT_S = 6.0  # how long the loop hangs when a test asks for it
INTAKE_JOIN_TIMEOUT_S = 1.0
LONGEST_WAIT_S = 1.0  # the loop looks around at least this often


class Supervisor:
    def __init__(self, settings: SupervisorSettings, parts: SupervisorParts) -> None:
        self.settings = settings
        self.parts = parts
        self.slots, self.custody, self.intake = parts.slots, parts.custody, parts.intake
        self.ledger, self.courier, self.outbox = parts.ledger, parts.courier, parts.outbox
        self.history, self.ends, self.clock = parts.history, parts.ends, parts.clock
        self.started_at = self.clock.time()
        self.stopping = False
        self.draining = False  # the status page asked for no new jobs until it asks again
        self.departure = Departure(self.clock, settings.notice_margin_s)
        self.pool_ready = False
        self.received_signals: list[int] = []
        self.selector = selectors.DefaultSelector()

    # --- life cycle -------------------------------------------------------------------

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._record_signal)
        clean_up_previous_run(self.slots.child)
        self.parts.monitor.start()
        self.selector.register(self.parts.waker.fileno(), selectors.EVENT_READ, ("wake", -1))
        self.slots.start(self.selector)
        self.outbox.start()
        self.ledger.start()
        for part in self.parts.upkeep:
            part.start()
        self.intake.start()
        if self.intake.wakeups is not None:
            self.selector.register(self.intake.wakeups.fileno(), selectors.EVENT_READ, ("queue", -1))
        log.info("supervisor started", extra=_start_fields(self.parts))
        try:
            exit_code = self._loop()
        except Exception:
            exit_code = EXIT_LOOP_FAILURE
            log.critical("the supervisor loop failed; stopping (the service manager restarts it)", exc_info=True)
            self._stop_after_failure()
        try:
            self._finish()
        except Exception:
            log.exception("stopping the supervisor failed")
            exit_code = exit_code or EXIT_LOOP_FAILURE
        return exit_code

    def _loop(self) -> int:
        while not (self.stopping and not self.slots.busy()):
            self._handle_signals()
            for command in self.parts.monitor.commands():
                self._drain(command == DRAIN)
            for notice in self.parts.notices():
                self._obey(notice)
            if self.departure.overdue():
                log.warning("shutdown grace is over: interrupting running jobs", extra={"jobs": len(self.slots.busy())})
                self._force_stop()
                continue
            if not self.stopping:
                self.intake.offer(self._receive_request(), groups_held=self.custody.holds_groups())
            self._hold(self.intake.take())
            self._dispatch()
            # Results go out after the next jobs went in, so a child never waits on them.
            self.ledger.record()
            idle = self.parts.queue.profile.flush_when_idle and not self.slots.busy()
            self.courier.flush(force=self.stopping or idle)
            self.outbox.run_due()
            self.custody.extend_visibility()
            for part in self.parts.upkeep:
                part.tick()
            for job in self.slots.take_back_unconfirmed():
                self.custody.put_back(job)
            self.slots.kill_overdue()
            self._wait_for_events()
            if self.parts.monitor.due():
                self.parts.monitor.publish(self.state())
            if self.slots.failing_at_boot():
                failures = {"failures": self.slots.boot_failures}
                log.critical("children keep failing to start; giving up (see their errors above)", extra=failures)
                self._begin_stop()
                self._force_stop()
                return EXIT_BOOT_FAILURE
        return EXIT_OK

    def _stop_after_failure(self) -> None:
        """`_begin_stop` and `_force_stop`, each step on its own: one failing stops no other."""
        self.stopping = True
        _run_each(self.parts.monitor.systemd.stopping, self.intake.stop, self._release_waiting, self._force_stop)

    def _finish(self) -> None:
        self.ledger.stop()
        for part in self.parts.upkeep:
            part.stop()
        _close_intake(self.parts)
        self._release_waiting()
        self.courier.flush(force=True)
        self.outbox.stop(timeout=self.departure.outbox_time_left())
        if self.parts.fleet is not None:
            self.parts.fleet.leave()
        self.parts.monitor.publish(self.state())
        self.parts.monitor.stop()
        self.slots.stop()
        log.info("supervisor stopped")

    # --- signals ----------------------------------------------------------------------

    def _record_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received_signals.append(signum)
        self.parts.waker.wake()

    def _handle_signals(self) -> None:
        while self.received_signals:
            name = signal.Signals(self.received_signals.pop(0)).name
            if not self.stopping:
                fields = {"signal": name, "grace_s": self.settings.shutdown_grace_s}
                log.info("stopping: no new jobs; running jobs may finish", extra=fields)
                record_interruption("sigterm")
                self._begin_stop()
                self.departure.signalled(self.settings.shutdown_grace_s)
            else:
                log.warning("stopping now: running jobs are interrupted and released", extra={"signal": name})
                self._force_stop()

    def _begin_stop(self) -> None:
        self.stopping = True
        self.parts.monitor.systemd.stopping()
        self.intake.stop()
        self._release_waiting()

    def _force_stop(self) -> None:
        """Interrupt every running job (its child kills the job's tree on SIGTERM) and release it."""
        for job in self.slots.interrupt_busy():
            self.custody.release_running(job, "interrupted by shutdown", self.departure.reason)

    def _release_waiting(self) -> None:
        self._hold(self.intake.take())
        self.custody.release_waiting("shutting down", self.departure.reason)

    def _obey(self, notice: Notice) -> None:
        """A recommendation drains; a notice that the box goes stops the worker, its running
        jobs interrupted and released `--notice-margin` before the box's time, if it has one."""
        if notice.soft:
            self._drain(True)
            return
        self.departure.noticed(notice)
        if not self.stopping:
            log.warning(notice.stopping_message, extra={"source": notice.source, "detail": notice.detail})
            self._begin_stop()

    def _drain(self, draining: bool) -> None:
        """Drained, no message is received and those held go back; running jobs finish."""
        if draining != self.draining:
            self.draining = draining
            log.info("drained: no new jobs until resumed" if draining else "resumed: taking new jobs")
            self._hold([])

    # --- messages in ------------------------------------------------------------------

    def _receive_request(self) -> ReceiveRequest:
        """Messages for the idle slots that have none to start, and prefetch's allowance for those
        held once the startable start; once as many wait (capped) as there are slots, none."""
        if self.draining or not self.parts.space.open:
            return NOTHING_WANTED
        idle = len(self.slots.idle())
        startable, blocked = self.custody.startable_and_blocked()
        starting = min(idle, len(startable))
        unfilled = idle - starting if blocked < self.slots.count else 0
        return self.parts.prefetch.request(unfilled_slots=unfilled, held=self.custody.held_count - starting)

    def _hold(self, received: list[ReceivedMessage]) -> None:
        """Hold the messages to run: not those the journal has as finished (deleted, not run
        again), nor a redelivery of one running or waiting here (it takes the new receipt)."""
        if received:  # most loop iterations: nothing to look up
            fresh = self.ledger.answer_finished(received, self.clock.monotonic() + self.custody.visibility_timeout)
            self.custody.hold(self.custody.take_redelivered(fresh))
        if self.draining and self.custody.held_count:
            self.custody.release_waiting("the worker is drained", "drain")

    def _dispatch(self) -> None:
        idle = self.slots.idle()
        startable = self.custody.startable() if idle and self.parts.space.open else []
        if startable:
            faults.check("dispatch")
            faults.stall("dispatch-stall", STALL_FAULT_S)
        for slot, held in zip(idle, startable, strict=False):
            self.slots.assign(slot, self.custody.start(held))

    # --- the children's word ----------------------------------------------------------

    def _wait_for_events(self) -> None:
        events = self.selector.select(timeout=self._seconds_to_next_due())
        exited = []
        for key, _ in events:
            kind, index = key.data
            if kind == "wake":
                self.parts.waker.drain()
            elif kind == "queue":
                self.intake.woken()
            elif kind == "message":
                self._on_child_message(self.slots.slots[index], self.slots.receive(index))
            else:
                exited.append(index)
        for index in exited:
            lost = self.slots.replace(index, stopping=self.stopping)
            if lost is not None:
                self.ends.lost(lost)

    def _on_child_message(self, slot: Slot, message: FromChild | None) -> None:
        if isinstance(message, JobEnd):
            for event in message.events:
                self._on_child_message(slot, event)
            job = self.slots.take_job(slot)
            # The freed slot takes its next job before the ended one's bookkeeping, until which
            # that job keeps its group's turn and its reservation: this dispatch starts no more.
            if job is not None:
                try:
                    faults.check("report-dispatch")
                    self._dispatch()
                finally:
                    self.ends.reported(slot, job, message.report)
        elif isinstance(message, ChildReady):
            self._announce_when_ready()
        elif isinstance(message, PullNote) and self.parts.images is not None:
            self.parts.images.pulled(message)
        elif isinstance(message, TableNote) and self.parts.cancels is not None:
            self.parts.cancels.table_note(message)
        elif isinstance(message, JobEventNote) and slot.job is not None:
            slot.job.progress = message.progress or slot.job.progress
            # A running job's event goes out with the results, in its request's group.
            self.courier.add(Parcel.of_event(self.parts.policy.event(slot.job.message, message)))

    def _announce_when_ready(self) -> None:
        if not self.pool_ready and self.slots.all_ready():
            self.pool_ready = True
            log.info("pool ready", extra={"workers": self.slots.count})
            state = self.state()
            self.parts.monitor.publish(state)
            self.parts.monitor.systemd.ready(state.summary())

    # --- timing and monitoring --------------------------------------------------------

    def _seconds_to_next_due(self) -> float:
        """Until the earliest part is due (the end of the shutdown grace too); at most LONGEST_WAIT_S."""
        due = [part.next_due() for part in _timed_parts(self.parts)] + [self.departure.stop_deadline]
        now = self.clock.monotonic()
        return max(0.0, min(moment for moment in [now + LONGEST_WAIT_S, *due] if moment is not None) - now)

    def state(self) -> WorkerState:
        return worker_state(self)


def _run_each(*steps: Callable[[], object]) -> None:
    for step in steps:
        try:
            step()
        except Exception:
            log.exception("a shutdown step failed", extra={"step": getattr(step, "__name__", repr(step))})


def _close_intake(parts: SupervisorParts) -> None:
    parts.intake.stop()
    parts.intake.join(timeout=INTAKE_JOIN_TIMEOUT_S)
    if parts.intake.is_alive():
        # Not worth holding the exit for: whatever that poll returns is hidden for one
        # visibility timeout and then delivered again, to this worker or another.
        log.info("leaving a long poll open at exit", extra={"queue": parts.queue.spec})


def _timed_parts(parts: SupervisorParts) -> list[TimedPart]:
    """The parts that say when they are next due."""
    fixed: list[TimedPart] = [parts.custody, parts.slots, parts.intake, parts.courier, parts.outbox, parts.ledger]
    return [*fixed, parts.monitor, *parts.upkeep]


def _start_fields(parts: SupervisorParts) -> dict[str, object]:
    return {
        "workers": parts.slots.count,
        "queue": parts.queue.spec,
        "kind": parts.slots.child.worker_kind,
        "prefetch_window_s": parts.prefetch.settings.window_s,
        "prefetch_max": parts.prefetch.settings.maximum,
    }

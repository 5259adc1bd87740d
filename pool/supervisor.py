"""The supervisor: owns signals, the slot table, intake, heartbeats, results and respawns.

Signal handlers only record the signal and wake the loop through a self-pipe; every action
happens in `run`'s loop, which waits on that pipe, the children's pipes and their
sentinels at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import selectors
import signal
import time
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType

from journal.base import JobJournal, Outcome
from journal.health import JournalHealth
from monitoring.metrics import (
    child_restart_count,
    jobs_by_status,
    queue_error_count,
    record_child_restart,
    record_job,
)
from monitoring.monitor import Monitor
from monitoring.state import RunningJob, WorkerState, status_path
from pool import faults
from pool.assignment import JobAssignment, JobEventNote, JobReport
from pool.child import SharedWithChild, child_main
from pool.courier import Parcel, ResultCourier
from pool.destinations import Destinations
from pool.handoff import hand_over
from pool.intake import Intake, PollingIntake
from pool.lanes import Held, Lanes
from pool.ledger import Ledger
from pool.notice import JobAccepted, new_notice_board, read
from pool.outbox import InlineOutbox, ThreadOutbox
from pool.prefetch import NO_PREFETCH, Prefetch, PrefetchSettings, ReceiveRequest
from pool.recovery import clean_up_previous_run
from pool.settings import ChildSettings
from protocol.version import VERSION
from queues.base import POLL_INTERVAL_S, JobQueue, ReceivedMessage, VisibilityChange

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_BOOT_FAILURE = 3
EXIT_LOOP_FAILURE = 4
MAX_BOOT_FAILURES = 5
CHILD_EXIT_TIMEOUT_S = 30.0
STALL_FAULT_S = 6.0  # how long the loop hangs when a test asks for it
CONFIRM_TIMEOUT_S = 5.0  # how long a child may take to say it took a job
INTAKE_JOIN_TIMEOUT_S = 1.0
DEFAULT_DEADLINE_MARGIN_S = 300.0  # beyond a job's limits: image pull, start-up, clean-up
OUTBOX_DRAIN_TIMEOUT_S = 30.0  # at exit, how long results and deletes still being retried may take


@dataclass(frozen=True)
class SupervisorSettings:
    workers: int
    visibility_timeout: float
    poll_wait_s: float
    shutdown_grace_s: float
    child: ChildSettings
    journal_retention_s: float
    stall_limit_s: float  # a loop this long without an iteration is unhealthy
    deadline_margin_s: float  # beyond a job's limits: image pull, start-up, clean-up
    prefetch: PrefetchSettings

    @property
    def job_deadline_s(self) -> float | None:
        """How long a child may hold one job before the supervisor kills it: both transfer
        allowances, the job's timeout, the kill grace and the margin. None without a job
        timeout ceiling: the command itself may then run for as long as it likes."""
        limits = self.child.ceilings
        if limits.timeout_s is None:
            return None
        transfers = 2 * (limits.transfer_timeout_s or 0.0)
        return transfers + limits.timeout_s + self.child.kill_grace_s + self.deadline_margin_s


@dataclass
class InFlight:
    message: ReceivedMessage
    visible_until: float
    started: float = field(default_factory=time.monotonic)
    confirmed: bool = False  # the child said it took the job


@dataclass
class Slot:
    index: int
    process: BaseProcess
    connection: Connection
    job_pid: ctypes.c_int  # shared with the child: its running job's pid, 0 when idle
    notice_board: ctypes.Array[ctypes.c_char]  # shared with the child: its job's id and reply queue
    taken: ctypes.c_int  # shared with the child: how many assignments it took
    handed: int = 0  # how many assignments it was given
    killed_for: str | None = None  # why the supervisor killed this child, if it did
    ready: bool = False
    job: InFlight | None = None
    retired: bool = False  # died during shutdown and not replaced


class Supervisor:
    def __init__(
        self,
        settings: SupervisorSettings,
        job_queue: JobQueue,
        result_queue: JobQueue | None,
        journal: JobJournal,
        *,
        dead_letter_queue: JobQueue | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        self.settings = settings
        self.policy = settings.child.outcomes
        self.journal_health = JournalHealth(journal.location)
        self.monitor = monitor or Monitor(status_path(settings.child.scratch_dir))
        self.started_at = time.time()
        self.job_queue = job_queue
        self.context = multiprocessing.get_context("spawn")
        self.slots: list[Slot] = []
        self.lanes = Lanes()  # received, not yet started
        # A held message of a FIFO queue locks its whole group, for every worker: there only
        # idle slots are received for (bench/fifo.py ran 200 jobs over 50 groups in twice the
        # time with prefetch on).
        self.prefetch = Prefetch(settings.prefetch if not job_queue.is_fifo else NO_PREFETCH, settings.workers)
        self.stopping = False
        self.stop_deadline: float | None = None
        self.boot_failures = 0
        self.pool_ready = False
        self.received_signals: list[int] = []
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.wake_read, selectors.EVENT_READ, None)
        self.intake: Intake | PollingIntake
        self.outbox: InlineOutbox | ThreadOutbox
        if job_queue.is_local:
            self.intake = PollingIntake(
                job_queue, visibility_timeout=settings.visibility_timeout, poll_interval_s=POLL_INTERVAL_S
            )
            self.outbox = InlineOutbox()
        else:
            self.intake = Intake(
                job_queue,
                visibility_timeout=settings.visibility_timeout,
                wait_seconds=settings.poll_wait_s,
                wake=self._wake,
            )
            self.outbox = ThreadOutbox()
        self.courier = ResultCourier(
            job_queue,
            Destinations(job_queue, result_queue),
            self.outbox,
            journal=journal,
            health=self.journal_health,
            dead_letter_queue=dead_letter_queue,
        )
        self.ledger = Ledger(journal, self.journal_health, self.courier, retention_s=settings.journal_retention_s)

    # --- life cycle -------------------------------------------------------------------

    def run(self) -> int:
        self._install_signal_handlers()
        clean_up_previous_run(self.settings.child)
        self.monitor.start()
        for index in range(self.settings.workers):
            self.slots.append(self._spawn(index))
        self.outbox.start()
        self.ledger.start()
        self.intake.start()
        if self.intake.wakeups is not None:
            self.selector.register(self.intake.wakeups.fileno(), selectors.EVENT_READ, ("queue", -1))
        log.info(
            "supervisor started",
            extra={
                "workers": self.settings.workers,
                "queue": self.job_queue.spec,
                "kind": self.settings.child.worker_kind,
                "prefetch_window_s": self.prefetch.settings.window_s,
                "prefetch_max": self.prefetch.settings.maximum,
            },
        )
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
        exit_code = EXIT_OK
        while not (self.stopping and not self._busy_slots()):
            self._handle_signals()
            if self.stop_deadline is not None and time.monotonic() >= self.stop_deadline:
                log.warning(
                    "shutdown grace is over: interrupting running jobs", extra={"jobs": len(self._busy_slots())}
                )
                self._force_stop()
                continue
            if not self.stopping:
                self.intake.offer(self._receive_request(), groups_held=self._holds_groups())
            self._hold(self.intake.take())
            self._dispatch()
            # Results go out after the next jobs went in, so a child never waits on them.
            self.ledger.record()
            # No batch is worth waiting for when stopping, nor on the embedded queue when idle.
            self.courier.flush(force=self.stopping or (self.job_queue.is_local and not self._busy_slots()))
            self.outbox.run_due()
            self._extend_visibility()
            self._replace_unresponsive()
            self._kill_overdue()
            self._wait_for_events()
            if self.monitor.due():
                self.monitor.publish(self.state())
            if self.boot_failures >= MAX_BOOT_FAILURES:
                log.critical(
                    "children keep failing to start; giving up (see their errors above)",
                    extra={"failures": self.boot_failures},
                )
                self._begin_stop()
                self._force_stop()
                exit_code = EXIT_BOOT_FAILURE
        return exit_code

    def _stop_after_failure(self) -> None:
        """What `_begin_stop` and `_force_stop` do, each step on its own, so that one more
        failure does not keep the others from running."""
        self.stopping = True
        steps = (self.monitor.systemd.stopping, self.intake.stop, self._release_waiting, self._force_stop)
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("a shutdown step failed", extra={"step": step.__name__})

    def _release_waiting(self) -> None:
        self._hold(self.intake.take())
        self._release(self.lanes.take_all(), "shutting down")

    def _hold(self, received: list[ReceivedMessage]) -> None:
        self.lanes.add(self._screen(received), time.monotonic() + self.settings.visibility_timeout)

    def _finish(self) -> None:
        self.ledger.stop()
        self.intake.stop()
        self.intake.join(timeout=INTAKE_JOIN_TIMEOUT_S)
        if isinstance(self.intake, Intake) and self.intake.is_alive():
            # Not worth holding the exit for: whatever that poll returns is hidden for one
            # visibility timeout and then delivered again, to this worker or another.
            log.info("leaving a long poll open at exit", extra={"queue": self.job_queue.spec})
        self._release_waiting()
        self.courier.flush(force=True)
        self.outbox.stop(timeout=OUTBOX_DRAIN_TIMEOUT_S)
        self.monitor.publish(self.state())
        self.monitor.stop()
        for slot in self._live_slots():
            with contextlib.suppress(OSError):
                slot.connection.send(None)
        for slot in self.slots:
            slot.process.join(timeout=5)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
        log.info("supervisor stopped")

    def _spawn(self, index: int) -> Slot:
        parent_end, child_end = self.context.Pipe()
        job_pid = self.context.RawValue(ctypes.c_int, 0)
        notice_board = new_notice_board(self.context)
        taken = self.context.RawValue(ctypes.c_int, 0)
        process = self.context.Process(
            target=child_main,
            args=(self.settings.child, child_end, index, SharedWithChild(job_pid, notice_board, taken)),
            name=f"api-worker-{index}",
            daemon=False,
        )
        process.start()
        child_end.close()
        slot = Slot(index, process, parent_end, job_pid, notice_board, taken)
        self._watch(slot)
        return slot

    # --- signals ----------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._record_signal)

    def _record_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received_signals.append(signum)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe: the loop is awake anyway
            os.write(self.wake_write, b"\0")

    def _handle_signals(self) -> None:
        while self.received_signals:
            signum = self.received_signals.pop(0)
            name = signal.Signals(signum).name
            if not self.stopping:
                log.info(
                    "stopping: no new jobs; running jobs may finish",
                    extra={"signal": name, "grace_s": self.settings.shutdown_grace_s},
                )
                self._begin_stop()
                self.stop_deadline = time.monotonic() + self.settings.shutdown_grace_s
            else:
                log.warning("stopping now: running jobs are interrupted and released", extra={"signal": name})
                self._force_stop()

    def _begin_stop(self) -> None:
        self.stopping = True
        self.monitor.systemd.stopping()
        self.intake.stop()
        self._release_waiting()

    def _force_stop(self) -> None:
        """Interrupt every running job (its child kills the job's tree on SIGTERM) and release it."""
        busy = self._busy_slots()
        for slot in busy:
            slot.process.terminate()
        deadline = time.monotonic() + CHILD_EXIT_TIMEOUT_S
        for slot in busy:
            assert slot.job is not None
            slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
            _kill_job_group(slot)
            self._release([slot.job.message], "interrupted by shutdown")
            slot.job, slot.ready, slot.retired = None, False, True
            self._unwatch(slot)

    # --- the loop's work --------------------------------------------------------------

    def _busy_slots(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.job is not None]

    def _receive_request(self) -> ReceiveRequest:
        """Messages for the idle slots that have none to start, and prefetch's allowance for
        the messages held once those that can start have started."""
        idle = sum(1 for slot in self.slots if slot.ready and slot.job is None)
        starting = min(idle, len(self.lanes.startable(self._busy_groups())))
        return self.prefetch.request(unfilled_slots=idle - starting, held=len(self.lanes) - starting)

    def _busy_groups(self) -> set[str]:
        return {slot.job.message.group_id for slot in self.slots if slot.job and slot.job.message.group_id}

    def _holds_groups(self) -> bool:
        """Whether a message group is locked by a message this worker holds (running or waiting)."""
        return any(kept.message.group_id for kept in self._kept_visible())

    def _dispatch(self) -> None:
        startable = self.lanes.startable(self._busy_groups())
        if startable:
            faults.check("dispatch")
            faults.stall("dispatch-stall", STALL_FAULT_S)
        for slot in self.slots:
            if not startable:
                return
            if slot.ready and slot.job is None:
                held = startable.pop(0)
                self.lanes.take(held)
                message = held.message
                slot.job = InFlight(message, held.visible_until)
                slot.handed += 1
                # If the child just died, _replace_dead reports and releases the job.
                hand_over(
                    slot.connection,
                    JobAssignment(message.message_id, message.body, message.receive_count, message.defect),
                )

    def _replace_unresponsive(self) -> None:
        """A child that has not taken its job within CONFIRM_TIMEOUT_S (stopped, hung, swapping)
        is killed and replaced; the job goes to another slot at once, costing no attempt.
        Asked once per job, and only of jobs that old: a quick job is never asked."""
        now = time.monotonic()
        for slot in self.slots:
            job = slot.job
            if job is None or job.confirmed or now - job.started < CONFIRM_TIMEOUT_S:
                continue
            if slot.taken.value >= slot.handed:
                job.confirmed = True
                continue
            log.error(
                "child did not take its job; replacing it and handing the job on",
                extra={"slot": slot.index, "pid": slot.process.pid, **_job_fields(job, None)},
            )
            self.lanes.put_back(job.message, job.visible_until)
            slot.job = None
            slot.process.kill()  # its exit brings _replace_dead, which respawns the slot

    def _kill_overdue(self) -> None:
        """A job still held past the supervisor's own deadline for it (its child hung, or its
        own limits failed): the child is killed with the job's processes, the job reported
        as a retryable error and its message handed back at once; the slot is respawned."""
        limit = self.settings.job_deadline_s
        if limit is None:
            return
        now = time.monotonic()
        for slot in self.slots:
            job = slot.job
            if job is None or slot.killed_for is not None or now - job.started < limit:
                continue
            slot.killed_for = f"the job outlived the worker's deadline of {limit:g} s; its child was killed"
            log.error(
                "job outlived the supervisor's deadline; killing its child",
                extra={"slot": slot.index, "pid": slot.process.pid, "deadline_s": limit, **_job_fields(job, None)},
            )
            slot.process.kill()  # its exit brings _replace_dead: job group killed, job reported, slot respawned
            _kill_job_group(slot)

    def _wait_for_events(self) -> None:
        events = self.selector.select(timeout=self._seconds_to_next_heartbeat())
        exited = []
        for key, _ in events:
            if key.data is None:
                self._drain_wake_pipe()
            elif key.data[0] == "queue":
                self.intake.woken()
            elif key.data[0] == "message":
                self._collect(self.slots[key.data[1]])
            else:
                exited.append(key.data[1])
        for index in exited:
            self._replace_dead(index)

    def _watch(self, slot: Slot) -> None:
        self.selector.register(slot.connection.fileno(), selectors.EVENT_READ, ("message", slot.index))
        self.selector.register(slot.process.sentinel, selectors.EVENT_READ, ("exit", slot.index))

    def _unwatch(self, slot: Slot) -> None:
        for descriptor in (slot.connection, slot.process.sentinel):
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.selector.unregister(descriptor)

    def _live_slots(self) -> list[Slot]:
        return [slot for slot in self.slots if not slot.retired]

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self.wake_read, 512):
                pass
        except BlockingIOError:
            pass

    def _collect(self, slot: Slot) -> None:
        """Take one message from a child; the selector reports the pipe again if more wait."""
        try:
            message = slot.connection.recv()
        except (EOFError, OSError):
            # The child died: stop watching its pipe; its exit event brings _replace_dead.
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.selector.unregister(slot.connection)
            return
        if message == "ready":
            slot.ready = True
            self.boot_failures = 0
            self._announce_when_ready()
        elif isinstance(message, JobReport):
            self._complete(slot, message)
        elif isinstance(message, JobEventNote) and slot.job is not None:
            self._pass_on(slot.job.message, message)

    def _announce_when_ready(self) -> None:
        if not self.pool_ready and all(slot.ready for slot in self.slots):
            self.pool_ready = True
            log.info("pool ready", extra={"workers": len(self.slots)})
            state = self.state()
            self.monitor.publish(state)
            self.monitor.systemd.ready(state.summary())

    def _complete(self, slot: Slot, report: JobReport) -> None:
        assert slot.job is not None
        job, message = slot.job, slot.job.message
        slot.job = None
        self.prefetch.job_ended(time.monotonic() - job.started)
        if report.duplicate_of is not None:
            self.ledger.answer_duplicate(message, report.job_id, report.status, report.duplicate_of, job.visible_until)
            return
        log.info("job finished", extra={"slot": slot.index, **report.summary})
        record_job(report.status, report.duration_s, report.bytes_in, report.bytes_out)
        outcome = self.policy.of_report(message, report)
        self.ledger.add(outcome, job.visible_until)
        self._keep_group_order(message, outcome)

    def _pass_on(self, message: ReceivedMessage, note: JobEventNote) -> None:
        """A running job's event goes out with the results, in its request's group."""
        self.courier.add(Parcel.of_event(self.policy.of_event(message, note), note.sequence))

    def _screen(self, messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
        """Keep the messages to run: not those the journal has as finished (deleted, not run
        again), nor a redelivery of one running or waiting here (it takes the new receipt)."""
        if not messages:  # most loop iterations: nothing to look up
            return messages
        finished = self.ledger.finished_among(messages)
        kept = {kept.message.message_id: kept for kept in self._kept_visible()}
        fresh = []
        for message in messages:
            done = finished.get(message.message_id)
            holder = kept.get(message.message_id)
            if done is not None:
                visible_until = time.monotonic() + self.settings.visibility_timeout
                self.ledger.answer_duplicate(message, done.job_id, done.status, done.message_id, visible_until)
            elif holder is not None:
                if isinstance(holder, InFlight):
                    log.warning(
                        "message redelivered while its job runs here; the job takes the new receipt",
                        extra=_job_fields(holder, None),
                    )
                else:
                    log.warning(
                        "message redelivered while it waits here; it keeps its place and takes the new receipt",
                        extra={"message_id": message.message_id, "attempt": message.receive_count},
                    )
                holder.message = message
                holder.visible_until = time.monotonic() + self.settings.visibility_timeout
            else:
                fresh.append(message)
        return fresh

    def _replace_dead(self, index: int) -> None:
        slot = self.slots[index]
        slot.process.join()
        exit_code = slot.process.exitcode
        if not slot.ready:
            self.boot_failures += 1
        accepted = None if slot.job is None else read(slot.notice_board, slot.job.message.message_id)
        job_fields = {} if slot.job is None else _job_fields(slot.job, accepted)
        log.error(
            "child died; replacing it",
            extra={"slot": index, "exitcode": exit_code, "had_job": slot.job is not None, **job_fields},
        )
        if slot.job is not None:
            _kill_job_group(slot)
            why = slot.killed_for or f"the worker child died (exit code {exit_code})"
            self._report_lost_job(slot, slot.job, accepted, why)
        self._unwatch(slot)
        slot.connection.close()
        if self.stopping:
            slot.ready, slot.job, slot.retired = False, None, True
            return
        record_child_restart()
        self.slots[index] = self._spawn(index)

    def _report_lost_job(self, slot: Slot, job: InFlight, accepted: JobAccepted | None, why: str) -> None:
        outcome, result = self.policy.of_lost_job(job.message, accepted, why)
        log.info("job lost", extra={"slot": slot.index, **result.summary()})
        record_job(outcome.status, 0.0, 0, 0)
        self.ledger.add(outcome, job.visible_until)
        self._keep_group_order(job.message, outcome)

    def _keep_group_order(self, message: ReceivedMessage, outcome: Outcome) -> None:
        """A job of a group that is to be retried comes back first: the group's later messages
        held here go back to the queue at once, behind it (its retry delay keeps the group
        locked on the queue until then)."""
        if message.group_id is not None and not outcome.final:
            self._release(self.lanes.take_group(message.group_id), "an earlier job of their group is retried")

    def _release(self, messages: list[ReceivedMessage], why: str) -> None:
        if not messages:
            return
        changes = [VisibilityChange(m.receipt, 0) for m in messages]
        log.info("releasing messages", extra={"count": len(messages), "reason": why})
        deadline = time.monotonic() + self.settings.visibility_timeout
        self.outbox.submit(
            f"release {len(messages)} messages", partial(self.job_queue.change_visibility, changes), deadline
        )

    # --- monitoring --------------------------------------------------------------------

    def state(self) -> WorkerState:
        now, clock = time.time(), time.monotonic()
        live = self._live_slots()
        busy = [slot for slot in live if slot.job is not None]
        return WorkerState(
            pid=os.getpid(),
            version=VERSION,
            kind=self.settings.child.worker_kind,
            queue=self.job_queue.spec,
            workers=self.settings.workers,
            started_at=self.started_at,
            updated_at=now,
            busy=len(busy),
            idle=sum(1 for slot in live if slot.ready and slot.job is None),
            starting=sum(1 for slot in live if not slot.ready),
            in_flight=len(busy) + len(self.lanes) + self.courier.pending_count(),
            held=len(self.lanes),
            jobs=jobs_by_status(),
            queue_errors=queue_error_count(),
            child_restarts=child_restart_count(),
            boot_failures=self.boot_failures,
            stopping=self.stopping,
            journal_problem=self.journal_health.problem,
            thread_problems=[p for p in (self.intake.problem(), self.outbox.problem()) if p],
            stall_limit_s=self.settings.stall_limit_s,
            running=[
                RunningJob(
                    slot.index,
                    slot.job.message.message_id,
                    slot.job.message.receive_count,
                    round(clock - slot.job.started, 1),
                )
                for slot in busy
                if slot.job is not None
            ],
        )

    # --- visibility heartbeat ---------------------------------------------------------

    def _kept_visible(self) -> list[InFlight | Held]:
        """Every message this worker holds and keeps hidden: running jobs and waiting ones."""
        return [*(slot.job for slot in self.slots if slot.job is not None), *self.lanes]

    def _extend_visibility(self) -> None:
        now = time.monotonic()
        margin = self.settings.visibility_timeout / 2
        due = [kept for kept in self._kept_visible() if kept.visible_until - now <= margin]
        if not due:
            return
        changes = [VisibilityChange(kept.message.receipt, self.settings.visibility_timeout) for kept in due]
        # Retried (remote queues) until the current window closes; then the messages come back.
        deadline = min(kept.visible_until for kept in due)
        self.outbox.submit("extend visibility", partial(self.job_queue.change_visibility, changes), deadline)
        for kept in due:
            kept.visible_until = now + self.settings.visibility_timeout

    def _seconds_to_next_heartbeat(self) -> float:
        margin = self.settings.visibility_timeout / 2
        deadlines = [kept.visible_until - margin for kept in self._kept_visible()]
        deadlines += [
            s.job.started + CONFIRM_TIMEOUT_S for s in self.slots if s.job is not None and not s.job.confirmed
        ]
        if self.settings.job_deadline_s is not None:
            deadlines += [s.job.started + self.settings.job_deadline_s for s in self.slots if s.job is not None]
        if self.stop_deadline is not None:
            deadlines.append(self.stop_deadline)
        for seconds in (
            self.intake.seconds_to_next_poll(),
            self.courier.seconds_to_flush(),
            self.outbox.seconds_to_due(),
            0.0 if self.ledger.has_unrecorded() else None,
        ):
            if seconds is not None:
                deadlines.append(time.monotonic() + seconds)
        return max(0.0, min([time.monotonic() + 1.0, *deadlines]) - time.monotonic())


def _job_fields(job: InFlight, accepted: JobAccepted | None) -> dict[str, object]:
    """The fields every log line about a job carries (the child adds them to its own lines)."""
    return {
        "job_id": accepted.job_id if accepted else job.message.message_id,
        "message_id": job.message.message_id,
        "attempt": job.message.receive_count,
        "service": accepted.service if accepted else None,
    }


def _kill_job_group(slot: Slot) -> None:
    """Kill what a dead or stopped child may have left running of its job."""
    job_pid = slot.job_pid.value
    if job_pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job_pid, signal.SIGKILL)

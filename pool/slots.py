"""The slot table: the pool's child processes, one job each at most.

It spawns children, hands them jobs, notices a child that does not confirm its job or outlives
the supervisor's deadline for it, kills and replaces children, and stops them. It owns
processes only: the messages are custody's, the outcomes the outcome policy's; what it learns
of a job (a report, an event, a child dead under it) it hands back to the supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import selectors
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from common.clock import SYSTEM_CLOCK, Clock
from monitoring.metrics import record_child_restart, record_start
from pool.child.main import child_main
from pool.child_settings import ChildSettings
from pool.handoff import hand_over
from pool.holding.custody import Running
from pool.notice_board import JobAccepted, new_notice_board, read
from pool.wire import ChildReady, FromChild, JobAssignment, SharedWithChild, StopChild

log = logging.getLogger(__name__)

CHILD_EXIT_TIMEOUT_S = 30.0
CONFIRM_TIMEOUT_S = 5.0  # how long a child may take to say it took a job
MAX_BOOT_FAILURES = 5


@dataclass
class Slot:
    index: int
    process: BaseProcess
    connection: Connection
    shared: SharedWithChild  # its running job's pid, notice board, assignments taken, disk use, stop flag
    handed: int = 0  # how many assignments it was given
    killed_for: str | None = None  # why the supervisor killed this child, if it did
    ready: bool = False
    job: Running | None = None
    retired: bool = False  # died during shutdown and not replaced

    @property
    def idle(self) -> bool:
        """Ready for a job: a child the supervisor killed is not, until its replacement is."""
        return self.ready and self.job is None and self.killed_for is None

    def kill_job_group(self) -> None:
        """Kill what a dead or stopped child may have left running of its job."""
        job_pid = self.shared.job_pid.value
        if job_pid > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job_pid, signal.SIGKILL)


@dataclass(frozen=True)
class LostJob:
    """A job whose child died under it."""

    job: Running
    accepted: JobAccepted | None  # what the child said of the job before it died
    why: str


class SlotTable:
    def __init__(
        self, child: ChildSettings, count: int, job_deadline_s: float | None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.clock = clock
        self.child = child
        self.count = count
        self.job_deadline_s = job_deadline_s  # None: a job may hold its slot for as long as it likes
        self.context = multiprocessing.get_context("spawn")
        self.slots: list[Slot] = []
        self.boot_failures = 0
        self._selector: selectors.BaseSelector | None = None
        # The native services configured by name: the only services that label metrics.
        self.known_services = frozenset(service.name for service in child.native if service.name is not None)

    def start(self, selector: selectors.BaseSelector) -> None:
        """Spawn every child; their pipes and exits are watched in `selector` as ("message" |
        "exit", slot index)."""
        self._selector = selector
        self.slots = [self._spawn(index) for index in range(self.count)]

    def idle(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.idle]

    def busy(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.job is not None]

    def live(self) -> list[Slot]:
        return [slot for slot in self.slots if not slot.retired]

    def all_ready(self) -> bool:
        return all(slot.ready for slot in self.slots)

    def accepted(self, slot: Slot) -> JobAccepted | None:
        """What the slot's child said of the job it holds, once it decoded it."""
        return None if slot.job is None else read(slot.shared.notice_board, slot.job.message.message_id)

    def failing_at_boot(self) -> bool:
        return self.boot_failures >= MAX_BOOT_FAILURES

    def assign(self, slot: Slot, job: Running) -> None:
        message = job.message
        slot.job = job
        slot.handed += 1
        record_start(message.sent_at, self.clock.time())
        # If the child just died, `replace` reports the job lost and it is handed on.
        hand_over(
            slot.connection,
            JobAssignment(message.message_id, message.body, message.receive_count, message.defect, job.gpus),
        )

    def receive(self, index: int) -> FromChild | None:
        """One message from a child (the selector reports the pipe again if more wait); None
        when its pipe is closed (its exit event follows). A message that is garbled or of no
        known kind is the slot's fault alone: its child is killed, and its exit reports the job."""
        slot = self.slots[index]
        try:
            message: object = slot.connection.recv()
        except (EOFError, OSError):
            self._unwatch_pipe(slot)
            return None
        except Exception as exc:  # unpickling runs the child's bytes: any error at all
            self._blame(slot, f"it sent a garbled message ({type(exc).__name__}: {exc})")
            return None
        if not isinstance(message, FromChild):
            self._blame(slot, f"it sent a {type(message).__name__}, which is no message of a child")
            return None
        if isinstance(message, ChildReady):
            slot.ready = True
            self.boot_failures = 0
        return message

    def _blame(self, slot: Slot, why: str) -> None:
        log.error(
            "child broke the wire; replacing it",
            extra={
                "slot": slot.index,
                "pid": slot.process.pid,
                "why": why,
                **(slot.job.log_fields() if slot.job else {}),
            },
        )
        slot.killed_for = f"its child was killed: {why}"
        self._unwatch_pipe(slot)
        slot.process.kill()
        slot.kill_job_group()

    def take_job(self, slot: Slot) -> Running | None:
        """The job whose report came, taken off its slot; None if the slot no longer holds one
        (taken back from a child slow to confirm it, and handed on: the report is ignored)."""
        job, slot.job = slot.job, None
        if job is None:
            log.warning("a report for a job its slot no longer holds; ignored", extra={"slot": slot.index})
        return job

    def replace(self, index: int, *, stopping: bool) -> LostJob | None:
        """A child exited: kill what is left of its job, and respawn it unless stopping."""
        slot = self.slots[index]
        slot.process.join()
        exit_code = slot.process.exitcode
        if not slot.ready:
            self.boot_failures += 1
        lost = None
        if slot.job is not None:
            accepted = read(slot.shared.notice_board, slot.job.message.message_id)
            why = slot.killed_for or f"the worker child died (exit code {exit_code})"
            lost = LostJob(slot.job, accepted, why)
            slot.kill_job_group()
        fields = {} if lost is None else lost.job.log_fields(*_named(lost.accepted))
        log.error(
            "child died; replacing it",
            extra={"slot": index, "exitcode": exit_code, "had_job": slot.job is not None, **fields},
        )
        self._unwatch(slot)
        slot.connection.close()
        if stopping:
            slot.ready, slot.job, slot.retired = False, None, True
        else:
            record_child_restart()
            self.slots[index] = self._spawn(index)
        return lost

    def take_back_unconfirmed(self) -> list[Running]:
        """Jobs whose child has not taken them within CONFIRM_TIMEOUT_S (stopped, hung,
        swapping): the child is killed (its exit respawns the slot) and the job returned, to go
        to another slot at once, costing no attempt. Asked once per job, and only of jobs that
        old: a quick job is never asked."""
        now = self.clock.monotonic()
        taken_back = []
        for slot in self.slots:
            job = slot.job
            if job is None or job.confirmed or now - job.started < CONFIRM_TIMEOUT_S:
                continue
            if slot.shared.taken.value >= slot.handed:
                job.confirmed = True
                continue
            log.error(
                "child did not take its job; replacing it and handing the job on",
                extra={"slot": slot.index, "pid": slot.process.pid, **job.log_fields()},
            )
            taken_back.append(job)
            slot.job = None
            # Until its exit is seen, no job may go to it: one would be reported lost, costing an attempt.
            slot.killed_for = "it did not take its job"
            slot.process.kill()
        return taken_back

    def kill_overdue(self) -> None:
        """A job still held past the supervisor's own deadline for it (its child hung, or its
        own limits failed): the child is killed with the job's processes; its exit reports the
        job lost (a retryable error, its message handed back at once) and respawns the slot."""
        limit = self.job_deadline_s
        if limit is None:
            return
        now = self.clock.monotonic()
        for slot in self.slots:
            job = slot.job
            if job is None or slot.killed_for is not None or now - job.started < limit:
                continue
            slot.killed_for = f"the job outlived the worker's deadline of {limit:g} s; its child was killed"
            log.error(
                "job outlived the supervisor's deadline; killing its child",
                extra={"slot": slot.index, "pid": slot.process.pid, "deadline_s": limit, **job.log_fields()},
            )
            slot.process.kill()
            slot.kill_job_group()

    def next_due(self) -> float | None:
        """When a confirmation or a deadline is next due (monotonic), if any job runs."""
        due = [job.started + CONFIRM_TIMEOUT_S for job in self._jobs() if not job.confirmed]
        if self.job_deadline_s is not None:
            due += [job.started + self.job_deadline_s for job in self._jobs()]
        return min(due, default=None)

    def interrupt_busy(self) -> list[Running]:
        """Stop every busy child (it kills its job's tree on SIGTERM), waiting up to
        CHILD_EXIT_TIMEOUT_S before killing it; the slots retire. Returns the interrupted jobs."""
        busy = self.busy()
        for slot in busy:
            slot.process.terminate()
        deadline = self.clock.monotonic() + CHILD_EXIT_TIMEOUT_S
        interrupted = []
        for slot in busy:
            assert slot.job is not None
            slot.process.join(timeout=max(0.0, deadline - self.clock.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
            slot.kill_job_group()
            interrupted.append(slot.job)
            slot.job, slot.ready, slot.retired = None, False, True
            self._unwatch(slot)
        return interrupted

    def stop(self) -> None:
        """Ask every idle child to exit; kill those that do not within 5 s."""
        for slot in self.live():
            with contextlib.suppress(OSError):
                slot.connection.send(StopChild())
        for slot in self.slots:
            slot.process.join(timeout=5)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()

    def _jobs(self) -> list[Running]:
        return [slot.job for slot in self.slots if slot.job is not None]

    def _spawn(self, index: int) -> Slot:
        parent_end, child_end = self.context.Pipe()
        job_pid = self.context.RawValue(ctypes.c_int, 0)
        notice_board = new_notice_board(self.context)
        taken = self.context.RawValue(ctypes.c_int, 0)
        disk_bytes = self.context.RawValue(ctypes.c_longlong, 0)
        stop_request = self.context.RawValue(ctypes.c_int, 0)
        shared = SharedWithChild(job_pid, notice_board, taken, disk_bytes, stop_request)
        process = self.context.Process(
            target=child_main,
            args=(self.child, child_end, index, shared),
            name=f"api-worker-{index}",
            daemon=False,
        )
        process.start()
        child_end.close()
        slot = Slot(index, process, parent_end, shared)
        assert self._selector is not None
        self._selector.register(slot.connection.fileno(), selectors.EVENT_READ, ("message", slot.index))
        self._selector.register(slot.process.sentinel, selectors.EVENT_READ, ("exit", slot.index))
        return slot

    def _unwatch_pipe(self, slot: Slot) -> None:
        assert self._selector is not None
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(slot.connection)

    def _unwatch(self, slot: Slot) -> None:
        assert self._selector is not None
        for descriptor in (slot.connection, slot.process.sentinel):
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(descriptor)


def _named(accepted: JobAccepted | None) -> tuple[str | None, str | None]:
    return (accepted.job_id, accepted.service) if accepted else (None, None)

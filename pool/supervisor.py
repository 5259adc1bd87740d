"""The supervisor: owns signals, the slot table, intake, heartbeats, results and respawns.

Signal handlers only record the signal and wake the loop through a self-pipe; every action
happens in `run`'s loop, which waits on that pipe, the children's pipes and their
sentinels at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from pool.assignment import JobAssignment, JobReport, JobStarted
from pool.child import child_main
from pool.intake import Intake
from pool.settings import ChildSettings
from protocol.request import peek_field
from protocol.result import ErrorInfo, JobResult, Status, WorkerIdentity, utc_timestamp
from queues.base import JobQueue, QueueError, ReceivedMessage, VisibilityChange
from staging.workspace import remove_stale_workspaces

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_BOOT_FAILURE = 3
MAX_BOOT_FAILURES = 5
MAX_RETRY_DELAY_S = 900.0
CHILD_EXIT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SupervisorSettings:
    workers: int
    visibility_timeout: float
    poll_wait_s: float
    retry_delay_s: float
    shutdown_grace_s: float
    child: ChildSettings


@dataclass
class InFlight:
    message: ReceivedMessage
    visible_until: float
    job_pid: int | None = None  # the job's process (and process group), once the child reports it


@dataclass
class Slot:
    index: int
    process: BaseProcess
    connection: Connection
    ready: bool = False
    job: InFlight | None = None
    retired: bool = False  # died during shutdown and not replaced


class Supervisor:
    def __init__(self, settings: SupervisorSettings, job_queue: JobQueue, result_queue: JobQueue | None) -> None:
        self.settings = settings
        self.job_queue = job_queue
        self.result_queue = result_queue
        self.context = multiprocessing.get_context("spawn")
        self.slots: list[Slot] = []
        self.pending: list[ReceivedMessage] = []
        self.stopping = False
        self.stop_deadline: float | None = None
        self.boot_failures = 0
        self.pool_ready = False
        self.received_signals: list[int] = []
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        self.intake = Intake(
            job_queue,
            visibility_timeout=settings.visibility_timeout,
            wait_seconds=settings.poll_wait_s,
            wake=self._wake,
        )
        self.reply_queues: dict[str, JobQueue] = {}

    # --- life cycle -------------------------------------------------------------------

    def run(self) -> int:
        self._install_signal_handlers()
        remove_stale_workspaces(self.settings.child.scratch_dir)
        for index in range(self.settings.workers):
            self.slots.append(self._spawn(index))
        self.intake.start()
        log.info(
            "supervisor started",
            extra={
                "workers": self.settings.workers,
                "queue": self.job_queue.spec,
                "kind": self.settings.child.worker_kind,
            },
        )
        exit_code = EXIT_OK
        while not (self.stopping and not self._busy_slots()):
            self._handle_signals()
            if self.stop_deadline is not None and time.monotonic() >= self.stop_deadline:
                log.warning(
                    "shutdown grace is over: interrupting running jobs", extra={"jobs": len(self._busy_slots())}
                )
                self._force_stop()
                continue
            self.pending.extend(self.intake.take())
            self._dispatch()
            if not self.stopping:
                self.intake.offer(self._free_slots_without_work())
            self._extend_visibility()
            self._wait_for_events()
            if self.boot_failures >= MAX_BOOT_FAILURES:
                log.critical(
                    "children keep failing to start; giving up (see their errors above)",
                    extra={"failures": self.boot_failures},
                )
                self._begin_stop()
                self._force_stop()
                exit_code = EXIT_BOOT_FAILURE
        self._finish()
        return exit_code

    def _finish(self) -> None:
        self.intake.stop()
        self.intake.join(timeout=self.settings.poll_wait_s + 5)
        self.pending.extend(self.intake.take())
        self._release(self.pending, "shutting down")
        self.pending.clear()
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
        process = self.context.Process(
            target=child_main, args=(self.settings.child, child_end, index), name=f"api-worker-{index}", daemon=False
        )
        process.start()
        child_end.close()
        return Slot(index, process, parent_end)

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
        self.intake.stop()
        self.pending.extend(self.intake.take())
        self._release(self.pending, "shutting down")
        self.pending.clear()

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
            _kill_job_group(slot.job)
            self._release([slot.job.message], "interrupted by shutdown")
            slot.job, slot.ready, slot.retired = None, False, True

    # --- the loop's work --------------------------------------------------------------

    def _busy_slots(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.job is not None]

    def _free_slots_without_work(self) -> int:
        idle = sum(1 for slot in self.slots if slot.ready and slot.job is None)
        return idle - len(self.pending)

    def _dispatch(self) -> None:
        for slot in self.slots:
            if not self.pending:
                return
            if slot.ready and slot.job is None:
                message = self.pending.pop(0)
                slot.job = InFlight(message, time.monotonic() + self.settings.visibility_timeout)
                # If the child just died, _replace_dead reports and releases the job.
                with contextlib.suppress(OSError):
                    slot.connection.send(JobAssignment(message.message_id, message.body, message.receive_count))

    def _wait_for_events(self) -> None:
        waitables: list[object] = [self.wake_read]
        for slot in self._live_slots():
            waitables += [slot.connection, slot.process.sentinel]
        for ready in wait(waitables, timeout=self._seconds_to_next_heartbeat()):  # type: ignore[arg-type]
            if ready == self.wake_read:
                self._drain_wake_pipe()
        for slot in self._live_slots():
            self._collect(slot)
            if not slot.process.is_alive():
                self._replace_dead(slot.index)

    def _live_slots(self) -> list[Slot]:
        return [slot for slot in self.slots if not slot.retired]

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self.wake_read, 512):
                pass
        except BlockingIOError:
            pass

    def _collect(self, slot: Slot) -> None:
        try:
            while slot.connection.poll():
                message = slot.connection.recv()
                if message == "ready":
                    slot.ready = True
                    self.boot_failures = 0
                    self._announce_when_ready()
                elif isinstance(message, JobStarted) and slot.job is not None:
                    slot.job.job_pid = message.pid
                elif isinstance(message, JobReport):
                    self._complete(slot, message)
        except (EOFError, OSError):
            pass  # the child died; _replace_dead deals with it

    def _announce_when_ready(self) -> None:
        if not self.pool_ready and all(slot.ready for slot in self.slots):
            self.pool_ready = True
            log.info("pool ready", extra={"workers": len(self.slots)})

    def _complete(self, slot: Slot, report: JobReport) -> None:
        assert slot.job is not None
        message = slot.job.message
        slot.job = None
        log.info(
            "job finished",
            extra={
                "job_id": report.job_id,
                "message_id": report.message_id,
                "status": report.status,
                "slot": slot.index,
            },
        )
        if not self._send_result(report.result_json, report.reply_to):
            return  # not deleted: the message comes back and the job runs again
        try:
            if report.status == Status.ERROR and message.receive_count < self.settings.child.max_attempts:
                self.job_queue.change_visibility([VisibilityChange(message.receipt, self._retry_delay(message))])
            else:
                self.job_queue.delete([message.receipt])
        except QueueError as exc:
            log.error(
                "could not settle a finished message", extra={"message_id": message.message_id, "error": str(exc)}
            )

    def _retry_delay(self, message: ReceivedMessage) -> float:
        return min(MAX_RETRY_DELAY_S, self.settings.retry_delay_s * 2.0 ** (message.receive_count - 1))

    def _send_result(self, result_json: str, reply_to: str | None) -> bool:
        queue = self.result_queue
        if reply_to is not None:
            try:
                queue = self._reply_queue(reply_to)
            except ValueError as exc:
                log.warning(
                    "unusable reply_to; result sent to the result queue",
                    extra={"reply_to": reply_to, "error": str(exc)},
                )
        log.info("result", extra={"result": json.loads(result_json)})
        if queue is None:
            return True
        try:
            queue.send(result_json)
            return True
        except QueueError as exc:
            log.error("could not send a result", extra={"queue": queue.spec, "error": str(exc)})
            return False

    def _reply_queue(self, name: str) -> JobQueue:
        if name not in self.reply_queues:
            self.reply_queues[name] = self.job_queue.sibling(name)
        return self.reply_queues[name]

    def _replace_dead(self, index: int) -> None:
        slot = self.slots[index]
        slot.process.join()
        exit_code = slot.process.exitcode
        if not slot.ready:
            self.boot_failures += 1
        log.error(
            "child died; replacing it", extra={"slot": index, "exitcode": exit_code, "had_job": slot.job is not None}
        )
        if slot.job is not None:
            _kill_job_group(slot.job)
            self._report_lost_job(slot.job.message, f"the worker child died (exit code {exit_code})")
        slot.connection.close()
        if self.stopping:
            slot.ready, slot.job, slot.retired = False, None, True
            return
        self.slots[index] = self._spawn(index)

    def _report_lost_job(self, message: ReceivedMessage, why: str) -> None:
        final = message.receive_count >= self.settings.child.max_attempts
        result = JobResult(
            id=peek_field(message.body, "id") or message.message_id,
            message_id=message.message_id,
            status=Status.ERROR,
            worker=WorkerIdentity.of_this_host(os.getpid()),
            attempt=message.receive_count,
            started_at=utc_timestamp(),
            finished_at=utc_timestamp(),
            error=ErrorInfo("worker", why),
            final=final,
        )
        if self._send_result(result.to_json(), peek_field(message.body, "reply_to", 2048)) and final:
            self.job_queue.delete([message.receipt])
        elif not final:
            self._release([message], why)

    def _release(self, messages: list[ReceivedMessage], why: str) -> None:
        if not messages:
            return
        try:
            self.job_queue.change_visibility([VisibilityChange(m.receipt, 0) for m in messages])
            log.info("released messages", extra={"count": len(messages), "reason": why})
        except QueueError as exc:
            log.error(
                "could not release messages; they return after their visibility timeout", extra={"error": str(exc)}
            )

    # --- visibility heartbeat ---------------------------------------------------------

    def _extend_visibility(self) -> None:
        now = time.monotonic()
        margin = self.settings.visibility_timeout / 2
        due = [slot.job for slot in self.slots if slot.job is not None and slot.job.visible_until - now <= margin]
        if not due:
            return
        try:
            self.job_queue.change_visibility(
                [VisibilityChange(job.message.receipt, self.settings.visibility_timeout) for job in due]
            )
        except QueueError as exc:
            log.error("visibility heartbeat failed", extra={"error": str(exc), "messages": len(due)})
            return
        for job in due:
            job.visible_until = now + self.settings.visibility_timeout

    def _seconds_to_next_heartbeat(self) -> float:
        margin = self.settings.visibility_timeout / 2
        deadlines = [slot.job.visible_until - margin for slot in self.slots if slot.job is not None]
        if self.stop_deadline is not None:
            deadlines.append(self.stop_deadline)
        return max(0.0, min([time.monotonic() + 1.0, *deadlines]) - time.monotonic())


def _kill_job_group(job: InFlight) -> None:
    """Kill what a dead or stopped child may have left running of its job."""
    if job.job_pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.job_pid, signal.SIGKILL)

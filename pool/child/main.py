"""A pool child: receives one job at a time over its pipe, runs it, sends the report back."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from types import FrameType

from common.logs import configure_logging, job_context
from journal.sqlite import SqliteJournal
from pool.child.channel import ChildChannel, EventPipe
from pool.child.executor import JobExecutor
from pool.child_settings import ChildSettings
from pool.notice_board import post
from pool.wire import STOP_CODES, ChildReady, SharedWithChild, StopChild
from runners.process import StopReason

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent_pid: int) -> None:
    """Get SIGTERM when the supervisor dies, however it dies, so no job outlives it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warning("cannot ask for a parent-death signal", extra={"errno": ctypes.get_errno()})
    if os.getppid() != parent_pid:
        raise SystemExit("the supervisor died while this child started")


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class SharedLink:
    """A running job's link to the supervisor, through the memory they share; and to the job
    table's lease on it, kept by this child."""

    def __init__(self, shared: SharedWithChild) -> None:
        self.shared = shared
        self._claim_lost = threading.Event()
        self._lock = threading.Lock()
        self._job = 0  # one more with each job: what a lease keeper says is of its job only

    def disk_measured(self, size_bytes: int) -> None:
        self.shared.disk_bytes.value = size_bytes

    def on_claim_lost(self) -> Callable[[], None]:
        """Stops the running job, and no later one, once the job table gave it to another worker."""
        job = self._job

        def claim_lost() -> None:
            with self._lock:
                if self._job == job:
                    self._claim_lost.set()

        return claim_lost

    def stop_requested(self) -> StopReason | None:
        if self._claim_lost.is_set():
            return StopReason.CLAIM_LOST
        return STOP_CODES.get(self.shared.stop_request.value)

    def reset(self) -> None:
        """Between jobs. Also as a job is taken: a stop the supervisor asked for just as the last
        job ended (before it had its report) is not the new job's."""
        with self._lock:
            self._job += 1
            self._claim_lost.clear()
        self.shared.job_pid.value = 0
        self.shared.disk_bytes.value = 0
        self.shared.stop_request.value = 0


def child_main(settings: ChildSettings, connection: Connection, slot: int, shared: SharedWithChild) -> None:
    """Run jobs until told to stop."""
    job_pid, notice_board = shared.job_pid, shared.notice_board
    # Ctrl-C reaches the whole foreground process group; only the supervisor acts on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM from the supervisor unwinds the job, so its process group is killed and its
    # directory removed on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    _die_with_parent(settings.supervisor_pid)
    configure_logging(settings.log_format, settings.log_level)
    link = SharedLink(shared)
    channel = ChildChannel(connection)
    events = EventPipe(channel)
    journal = None if settings.journal_path is None else SqliteJournal(settings.journal_path, writer=False)
    executor = JobExecutor(
        settings,
        slot,
        on_job_start=lambda pid: setattr(job_pid, "value", pid),
        on_accepted=partial(post, notice_board),
        journal=journal,
        on_event=events.send,
        link=link,
        on_pull=channel.send,  # from the job's thread
        on_table=channel.send,  # from the job's thread or its lease keeper's
    )
    executor.runners.recover()
    channel.send(ChildReady())
    try:
        _serve(executor, channel, slot, link, events)
        code = 0
    except SystemExit as stop:  # SIGTERM: the job has unwound (its processes killed, its directory removed)
        code = stop.code if isinstance(stop.code, int) else 1
    # Leave without the interpreter's clean-up: a transfer thread still blocked on the network
    # must not hold the exit up, and the S3 engine's native threads, still winding down just
    # after a transfer, can abort a process that finalizes under them.
    executor.close()
    logging.shutdown()
    os._exit(code)


def _serve(executor: JobExecutor, channel: ChildChannel, slot: int, link: SharedLink, events: EventPipe) -> None:
    while True:
        assignment = channel.receive()
        if isinstance(assignment, StopChild):
            return  # asked to, or the supervisor is gone
        link.reset()
        link.shared.taken.value += 1  # the supervisor replaces a child that does not take its job in time
        with job_context(slot=slot, message_id=assignment.message_id, attempt=assignment.receive_count):
            report = executor.execute(assignment)
        link.reset()
        try:
            channel.send(events.end(report))
        except OSError:
            return  # the supervisor is gone; the message comes back after its visibility timeout

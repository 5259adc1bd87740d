"""A pool child: receives one job at a time over its pipe, runs it, sends the report back."""

from __future__ import annotations

import logging
import signal
from multiprocessing.connection import Connection
from types import FrameType

from config.logs import configure_logging
from pool.assignment import JobAssignment
from pool.job import JobExecutor
from pool.settings import ChildSettings

log = logging.getLogger(__name__)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def child_main(settings: ChildSettings, connection: Connection, slot: int) -> None:
    # Ctrl-C reaches the whole foreground process group; only the supervisor acts on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM from the supervisor unwinds the job, so its process group is killed and its
    # directory removed on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    configure_logging(settings.log_format, settings.log_level)
    executor = JobExecutor(settings)
    connection.send("ready")
    while True:
        try:
            assignment = connection.recv()
        except EOFError:
            return  # the supervisor is gone
        if assignment is None:
            return
        assert isinstance(assignment, JobAssignment)
        log.info(
            "job started",
            extra={"slot": slot, "message_id": assignment.message_id, "attempt": assignment.receive_count},
        )
        report = executor.execute(assignment)
        try:
            connection.send(report)
        except OSError:
            return  # the supervisor is gone; the message comes back after its visibility timeout

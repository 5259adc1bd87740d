"""A child's end of its pipe to the supervisor: typed messages, one writer at a time.

Three threads of a child write to the supervisor: the job's own (its report, image pulls, the
job table's state), the progress ticker (events) and the lease keeper (the job table's state).
A message over 16 KiB goes out in two writes; without the lock two of them could interleave
and garble the pipe.
"""

from __future__ import annotations

import threading
from multiprocessing.connection import Connection

from common import faults
from pool.wire import AnyReport, FromChild, JobAssignment, JobEnd, JobEventNote, StopChild, ToChild

GARBAGE = b"\x80\x05garbled"  # what the "garbled-report" fault sends instead of a report: no pickle


class ChildChannel:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, message: FromChild) -> None:
        """OSError when the supervisor is gone."""
        with self._lock:
            if isinstance(message, JobEnd) and faults.fires("garbled-report"):
                self._connection.send_bytes(GARBAGE)
                return
            self._connection.send(message)

    def receive(self) -> ToChild:
        """The next assignment; StopChild when told to stop or when the supervisor is gone."""
        try:
            message = self._connection.recv()
        except (EOFError, OSError):
            return StopChild()
        if not isinstance(message, JobAssignment | StopChild):
            raise TypeError(f"the supervisor sent a {type(message).__name__}, not a job")
        return message


class EventPipe:
    """A job's events on their way to the supervisor. One from another thread (the progress
    ticker's, while the job runs) is sent at once; one from the job's own thread (those of its
    end) waits for the job's report and goes in the same write, which wakes the supervisor
    once for both."""

    def __init__(self, channel: ChildChannel) -> None:
        self.channel = channel
        self.job_thread = threading.get_ident()
        self.held: list[JobEventNote] = []

    def send(self, note: JobEventNote) -> None:
        if threading.get_ident() == self.job_thread:
            self.held.append(note)
        else:
            self.channel.send(note)

    def end(self, report: AnyReport) -> JobEnd:
        """The job's end: its report, with the events held for it."""
        held, self.held = tuple(self.held), []
        return JobEnd(report, held)

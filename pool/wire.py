"""The wire between the supervisor and a child (pickled over a pipe): what the supervisor hands
a child (ToChild), and everything the child sends back (FromChild)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from journal.job_table import StoredResult
from protocol.result import JobResult, Progress
from queues.base import BodyDefect
from runners.process import StopReason
from runners.pulls import PullNote
from staging.input_cache import CacheCounters


@dataclass(frozen=True)
class JobAssignment:
    message_id: str
    body: str
    receive_count: int
    defect: BodyDefect | None = None
    gpus: tuple[str, ...] = ()  # the devices reserved for it (UUIDs)


@dataclass(frozen=True)
class JobEventNote:
    """A non-final message to send about the running job (`"events": true`)."""

    message_id: str
    body: str
    reply_to: str | None
    sequence: int  # per job, from 1: keeps each event's deduplication id its own
    progress: Progress | None = None  # a progress event's, for the status page


@dataclass(frozen=True)
class JobReport:
    """What happened to a job, as its child saw it: the result's facts and whether an error is
    worth another attempt. Whether this attempt is final is the outcome policy's to say."""

    result: JobResult
    retryable: bool  # an `error` that another attempt may not meet (storage down, engine away)
    reply_to: str | None  # the request's usable reply queue, if it named one
    bytes_in: int = 0  # staged in
    bytes_out: int = 0  # uploaded
    cache: CacheCounters | None = None  # what its inputs took from the input cache, when there is one


@dataclass(frozen=True)
class DuplicateReport:
    """A job not run: the journal or the job table has its id as finished."""

    message_id: str
    job_id: str
    status: str
    finished_as: str  # the message it finished under
    stored: StoredResult | None = None  # its final result as the table keeps it, to send again
    reply_to: str | None = None  # the request's usable reply queue, if it named one


@dataclass(frozen=True)
class HeldElsewhereReport:
    """A job not run: another worker holds its claim in the job table until its lease ends."""

    message_id: str
    job_id: str
    owner: str
    lease_left_s: float


@dataclass(frozen=True)
class StaleReport:
    """A job whose claim went to another worker while it ran here: nothing of it is published."""

    message_id: str
    job_id: str
    fence: int


@dataclass(frozen=True)
class TableNote:
    """The job table's state as a child found it: its problem, or None once it answers again."""

    problem: str | None


AnyReport = JobReport | DuplicateReport | HeldElsewhereReport | StaleReport


@dataclass(frozen=True)
class ChildReady:
    """The child has started and takes jobs."""


@dataclass(frozen=True)
class StopChild:
    """Leave (sent to an idle child as the worker stops)."""


@dataclass(frozen=True)
class JobEnd:
    """A job's report, with the events of its end, in one write: the supervisor wakes once."""

    report: AnyReport
    events: tuple[JobEventNote, ...] = ()


ToChild = JobAssignment | StopChild
FromChild = ChildReady | JobEnd | JobEventNote | PullNote | TableNote


@dataclass(frozen=True)
class SharedWithChild:
    """Memory a child shares with the supervisor."""

    job_pid: ctypes.c_int  # its running job's pid (0: none), so a dead child's job can be killed
    notice_board: ctypes.Array[ctypes.c_char]  # its job's addressing fields, to report a dead child's job
    taken: ctypes.c_int  # assignments taken: a child that does not take its job in time is replaced
    disk_bytes: ctypes.c_longlong  # what its running job's directory held at the last look
    stop_request: ctypes.c_int  # set by the supervisor: stop the running job (a STOP_CODES key)


STOP_FOR_DISK, STOP_FOR_CANCEL = 1, 2
STOP_CODES = {STOP_FOR_DISK: StopReason.SCRATCH_FULL, STOP_FOR_CANCEL: StopReason.CANCELED}  # the child's reading

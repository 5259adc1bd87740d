"""What the supervisor hands a child, and what the child hands back (pickled over a pipe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from queues.base import BodyDefect


@dataclass(frozen=True)
class JobAssignment:
    message_id: str
    body: str
    receive_count: int
    defect: BodyDefect | None = None


@dataclass(frozen=True)
class JobEventNote:
    """A non-final message to send about the running job (`"events": true`)."""

    message_id: str
    body: str
    reply_to: str | None
    sequence: int  # per job, from 1: keeps each event's deduplication id its own


@dataclass(frozen=True)
class JobReport:
    message_id: str
    job_id: str
    result_json: str
    status: str
    reply_to: str | None
    final: bool  # False: a system error to retry
    summary: dict[str, Any]  # for the log line
    duration_s: float = 0.0
    bytes_in: int = 0  # staged in
    bytes_out: int = 0  # uploaded
    duplicate_of: str | None = None  # not run: the journal has this job as finished under that message

"""What the supervisor hands a child, and what the child hands back (pickled over a pipe)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobAssignment:
    message_id: str
    body: str
    receive_count: int


@dataclass(frozen=True)
class JobReport:
    message_id: str
    result_json: str
    status: str
    job_id: str
    reply_to: str | None


@dataclass(frozen=True)
class JobStarted:
    """Sent by the child once the job's process exists: its pid leads the job's process group."""

    pid: int

"""A request to cancel a job by its id, and where such requests are kept (the embedded queue's
file, or the shared job table)."""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

MAX_REASON_CHARS = 1000
DEFAULT_CANCEL_POLL_S = 5.0  # how often a worker looks up cancel requests for its running jobs
# A request whose job never ends here (never received, or finished elsewhere) is dropped after
# this long: the default --journal-retention, the longest a finished job is remembered.
CANCEL_EXPIRY_S = 4 * 86400.0


@dataclass(frozen=True)
class CancelRequest:
    job_id: str
    reason: str
    requested_by: str  # user@host of whoever asked
    requested_at: float = field(default_factory=time.time)  # epoch seconds

    def describe(self) -> str:
        """What the canceled job's result says of it."""
        return f"canceled by {self.requested_by}: {self.reason}"


def new_cancel_request(job_id: str, reason: str | None, requested_by: str | None = None) -> CancelRequest:
    """A request made here, by this user (or `requested_by`); the reason cut to MAX_REASON_CHARS."""
    text = (reason or "no reason given")[:MAX_REASON_CHARS]
    return CancelRequest(job_id, text, requested_by or _this_user())


def _this_user() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class CancelUnavailable(Exception):
    """The store of cancel requests cannot be read or written now (a system fault)."""


class CancelMarks(Protocol):
    def requested(self, job_ids: Sequence[str]) -> dict[str, CancelRequest]:
        """The cancel requests for these jobs (one read for all); CancelUnavailable if it fails."""
        ...

    def request(self, cancel: CancelRequest) -> None:
        """Keep the request (a later one for the same job replaces it); CancelUnavailable if it fails."""
        ...

    def forget(self, job_id: str, requested_before: float) -> None:
        """The job ended (its final result is out): its requests made before then are dropped,
        so a later job with its id is a new job; CancelUnavailable if it fails."""
        ...

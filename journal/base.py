"""The journal interface the pool relies on, whatever the store (a local SQLite file today;
a shared table with conditional writes could serve many boxes later)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class JournalUnusable(Exception):
    """The journal cannot be opened as one (corrupt, not a journal, newer version, in use)."""


class JournalInUse(JournalUnusable):
    """Another worker holds the journal."""


class JournalError(Exception):
    """A read or write of an open journal failed (disk full, I/O error)."""


OutcomeKey = tuple[str, int]  # (message id, attempt)


@dataclass(frozen=True)
class Outcome:
    """One attempt's outcome, as written before anything of it is sent.

    `result_json` goes to `reply_to` (None: the worker's result queue); `dead_letter_body`,
    when set, is copied to the dead-letter queue; then the message is deleted (final) or
    hidden for `retry_in_s` (not final). `group_id`: the message's group, which its result
    and dead-letter copy keep."""

    message_id: str
    job_id: str
    attempt: int
    status: str
    final: bool
    receipt: str
    result_json: str
    reply_to: str | None = None
    dead_letter_body: str | None = None
    retry_in_s: float | None = None
    group_id: str | None = None

    @property
    def key(self) -> OutcomeKey:
        return (self.message_id, self.attempt)

    @property
    def deduplication_id(self) -> str:
        """The same for every send of this attempt's result, so that a queue that deduplicates
        (SQS FIFO, for five minutes) takes one copy."""
        return f"{self.message_id}:{self.attempt}"


@dataclass(frozen=True)
class ImageUse:
    """When a job here last used an image, and whether this worker pulled it."""

    reference: str  # as the message named it
    last_used: float  # time.time()
    pulled: bool


@dataclass(frozen=True)
class FinishedJob:
    """What the journal keeps of a finished job once its result was delivered (a tombstone)."""

    message_id: str
    job_id: str
    status: str
    finished_at: float  # epoch seconds
    delivered: bool  # its result (and dead-letter copy) confirmed sent


class JobJournal(Protocol):
    @property
    def location(self) -> str:
        """Where the journal lives, for log lines and errors."""
        ...

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Write outcomes durably, in one transaction; raise JournalError if that fails."""
        ...

    def finished(self, message_ids: Sequence[str]) -> dict[str, FinishedJob]:
        """The final outcomes recorded for these message ids."""
        ...

    def finished_job(self, job_id: str) -> FinishedJob | None:
        """The final outcome recorded for a job id (for deduplication by request id)."""
        ...

    def mark_sent(self, keys: Sequence[OutcomeKey]) -> None:
        """Their results and dead-letter copies went out: drop the bodies."""
        ...

    def mark_settled(self, keys: Sequence[OutcomeKey]) -> None:
        """Their messages were deleted or hidden for a retry: keep only a tombstone of a final one."""
        ...

    def unsettled(self) -> list[Outcome]:
        """Outcomes not yet fully delivered (left by a worker that stopped), oldest first.
        An outcome whose result went out has an empty `result_json`."""
        ...

    def prune(self, finished_before: float, limit: int) -> int:
        """Forget up to `limit` settled final outcomes that finished before that epoch time;
        return how many went."""
        ...

    def close(self) -> None: ...

"""`supervisor.py cancel`: ask the workers to cancel a job by its id and, optionally, wait until
it is canceled (or finished before the request reached it)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from journal.base import JobJournal, JournalError
from journal.job_table import FINISHED, JobTable
from protocol.cancel import new_cancel_request
from queues.local_cancels import LocalCancels

EXIT_CANCELED = 0
EXIT_NO_OUTCOME = 4
EXIT_FINISHED = 5
EXIT_UNKNOWN = 6
POLL_S = 0.5


def cancel_in_table(
    table: JobTable, job_id: str, reason: str | None, *, wait: bool, timeout_s: float | None, out: TextIO = sys.stdout
) -> int:
    item = table.state(job_id)
    if item.get("state") == FINISHED:
        print(f"job {job_id} already finished: {item.get('status')}", file=out)
        return EXIT_FINISHED
    table.request(new_cancel_request(job_id, reason))
    if not item:
        print(f"job {job_id} is not in the job table yet: it is canceled when a worker receives it", file=out)
    else:
        print(f"cancel requested for job {job_id} (held by {item.get('owner')})", file=out)
    if not wait:
        return EXIT_CANCELED
    return _wait(lambda: _table_outcome(table, job_id), job_id, timeout_s, out)


def cancel_on_local_queue(
    marks: LocalCancels,
    journal: JobJournal | None,
    job_id: str,
    reason: str | None,
    *,
    wait: bool,
    timeout_s: float | None,
    out: TextIO = sys.stdout,
) -> int:
    where = marks.whereabouts(job_id)
    if where is None:
        status = _journal_outcome(journal, job_id)
        if status is not None:
            print(f"job {job_id} already finished: {status}", file=out)
            return EXIT_FINISHED
        print(f"no job {job_id} on queue {marks.path} (nor in this worker's journal)", file=sys.stderr)
        return EXIT_UNKNOWN
    marks.request(new_cancel_request(job_id, reason))
    print(f"cancel requested for job {job_id} ({where})", file=out)
    if not wait:
        return EXIT_CANCELED

    def outcome() -> str | None:
        if marks.whereabouts(job_id) is not None:
            return None
        return _journal_outcome(journal, job_id) or "gone from the queue"

    return _wait(outcome, job_id, timeout_s, out)


def _wait(outcome: Callable[[], str | None], job_id: str, timeout_s: float | None, out: TextIO) -> int:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while deadline is None or time.monotonic() < deadline:
        status = outcome()
        if status is not None:
            print(f"job {job_id}: {status}", file=out)
            return EXIT_CANCELED if status == "canceled" else EXIT_FINISHED
        time.sleep(POLL_S)
    print(f"job {job_id} was neither canceled nor finished within {timeout_s} s", file=sys.stderr)
    return EXIT_NO_OUTCOME


def _table_outcome(table: JobTable, job_id: str) -> str | None:
    item = table.state(job_id)
    return str(item.get("status")) if item.get("state") == FINISHED else None


def _journal_outcome(journal: JobJournal | None, job_id: str) -> str | None:
    """The job's final status if the journal has it, by job id or as a message id."""
    if journal is None:
        return None
    try:
        found = journal.finished_job(job_id) or journal.finished([job_id]).get(job_id)
    except JournalError:
        return None
    return None if found is None else found.status

"""Cancel requests kept in the embedded queue's file, beside the messages they name: one box
needs no other store to cancel a job."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from common.sqlite import connect, set_up, write_transaction
from protocol.cancel import CANCEL_EXPIRY_S, CancelRequest, CancelUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cancels (
    queue TEXT NOT NULL,
    job_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at REAL NOT NULL,
    PRIMARY KEY (queue, job_id)
) WITHOUT ROWID;
"""
_SELECT = "SELECT job_id, reason, requested_by, requested_at FROM cancels WHERE queue = ?"
_LOOKUP_CHUNK = 500  # ids per query, well under SQLite's limit on parameters
# A message is the job's when its id is the job id, or its body's "id" is.
_FIND_MESSAGE = """
SELECT receive_count, visible_at FROM messages WHERE queue = ? AND (message_id = ? OR (
    json_valid(body) AND json_type(body) = 'object' AND json_extract(body, '$.id') = ?))
ORDER BY seq LIMIT 1
"""


class LocalCancels:
    """Picklable (a child opens its own connection); safe to share between threads."""

    def __init__(self, path: Path, queue_name: str) -> None:
        self.path = path
        self.queue_name = queue_name
        self._local = threading.local()

    def __reduce__(self) -> tuple[type[LocalCancels], tuple[Path, str]]:
        return (LocalCancels, (self.path, self.queue_name))

    def _db(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = connect(self.path)
                set_up(connection, _create_table)
            except (sqlite3.Error, OSError) as exc:
                raise CancelUnavailable(f"cannot open the cancel requests in {self.path}: {exc}") from exc
            self._local.connection = connection
        return connection

    def requested(self, job_ids: Sequence[str]) -> dict[str, CancelRequest]:
        found: dict[str, CancelRequest] = {}
        ids = list(dict.fromkeys(job_ids))
        try:
            db = self._db()
            for start in range(0, len(ids), _LOOKUP_CHUNK):
                chunk = ids[start : start + _LOOKUP_CHUNK]
                placeholders = ", ".join("?" * len(chunk))
                query = f"{_SELECT} AND job_id IN ({placeholders})"
                rows = db.execute(query, (self.queue_name, *chunk))
                found.update((row[0], CancelRequest(*row)) for row in rows)
        except sqlite3.Error as exc:
            raise CancelUnavailable(f"cannot read the cancel requests in {self.path}: {exc}") from exc
        return found

    def request(self, cancel: CancelRequest) -> None:
        """Kept until its job's final result, or CANCEL_EXPIRY_S; older requests go now."""
        try:
            db = self._db()
            with write_transaction(db):
                db.execute(
                    "DELETE FROM cancels WHERE queue = ? AND requested_at < ?",
                    (self.queue_name, time.time() - CANCEL_EXPIRY_S),
                )
                db.execute(
                    "INSERT OR REPLACE INTO cancels VALUES (?, ?, ?, ?, ?)",
                    (self.queue_name, cancel.job_id, cancel.reason, cancel.requested_by, cancel.requested_at),
                )
        except sqlite3.Error as exc:
            raise CancelUnavailable(f"cannot write the cancel request in {self.path}: {exc}") from exc

    def forget(self, job_id: str, requested_before: float) -> None:
        try:
            db = self._db()
            with write_transaction(db):
                db.execute(
                    "DELETE FROM cancels WHERE queue = ? AND job_id = ? AND requested_at <= ?",
                    (self.queue_name, job_id, requested_before),
                )
        except sqlite3.Error as exc:
            raise CancelUnavailable(f"cannot drop the cancel request in {self.path}: {exc}") from exc

    def whereabouts(self, job_id: str) -> str | None:
        """`queued` or `received` if a message of the job is still on the queue, else None."""
        try:
            row = self._db().execute(_FIND_MESSAGE, (self.queue_name, job_id, job_id)).fetchone()
        except sqlite3.Error as exc:
            raise CancelUnavailable(f"cannot read the queue {self.path}: {exc}") from exc
        if row is None:
            return None
        receive_count, _visible_at = row
        return "received" if receive_count else "queued"


def _create_table(connection: sqlite3.Connection) -> None:
    connection.executescript(_SCHEMA)

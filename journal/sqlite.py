"""The journal in a local SQLite file (WAL mode), one per worker.

A row is written for each outcome before anything of it is sent. It loses its bodies once
its result went out (`sent`), and once its message was deleted it is a tombstone of about a
hundred bytes, kept for the retention so that a redelivered message is recognised.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from common.pathlock import PathInUse, hold_lock
from common.sqlite import connect, write_transaction
from journal.base import FinishedJob, ImageUse, JournalError, JournalInUse, JournalUnusable, Outcome, OutcomeKey

APPLICATION_ID = 0x41505752  # "APWR": marks the file as an api-worker journal
FORMAT_VERSION = 3  # 2: deliveries.group_id; 3: images
SQLITE_HEADER = b"SQLite format 3\x00"
RECORDED, SENT, SETTLED = 0, 1, 2
QUICK_CHECK_MAX_BYTES = 256 << 20  # a larger journal is checked only by the reads a start-up makes

# Tombstones and bodies apart: once delivered, a row's bodies go as whole pages that new
# rows reuse, and the tombstones stay densely packed.
_SCHEMA = """
CREATE TABLE outcomes (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    job_id TEXT,                -- NULL: the same as message_id
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    final INTEGER NOT NULL,
    finished_at REAL NOT NULL,
    state INTEGER NOT NULL      -- 0 recorded, 1 result sent, 2 message settled
);
CREATE INDEX outcomes_message ON outcomes (message_id, attempt);
CREATE INDEX outcomes_job ON outcomes (job_id) WHERE job_id IS NOT NULL;
CREATE TABLE deliveries (       -- what is left to do for an outcome not yet settled
    seq INTEGER PRIMARY KEY,
    receipt TEXT NOT NULL,
    reply_to TEXT,
    result TEXT,                -- NULL once sent
    dead_letter TEXT,
    retry_in_s REAL,
    group_id TEXT
);
CREATE TABLE images (           -- the images jobs here used: the image cache's record
    reference TEXT PRIMARY KEY,
    pulled INTEGER NOT NULL,    -- this worker pulled it (only those are removed, by default)
    last_used REAL NOT NULL
) WITHOUT ROWID;
"""
_IMAGES_TABLE = _SCHEMA[_SCHEMA.index("CREATE TABLE images") :]
_UPGRADES = {  # from format N to N + 1
    1: "ALTER TABLE deliveries ADD COLUMN group_id TEXT;",
    2: _IMAGES_TABLE,
}
_FINISHED_COLUMNS = "message_id, coalesce(job_id, message_id), status, finished_at, state"


class SqliteJournal:
    """Safe to share between threads (one connection each). A writer holds the file's lock
    for its life, so two workers never share one journal; readers (children checking a job
    id) take no lock."""

    def __init__(self, path: Path, *, writer: bool = True) -> None:
        self.path = path
        self._local = threading.local()
        # The loop's writes and the outbox's take turns here: waiting on SQLite's lock instead
        # means its busy handler's sleeps, a millisecond or more in the loop.
        self._writing = threading.Lock()
        self._lock_file: IO[bytes] | None = None
        if writer:
            self._lock_file = _lock(path)
            self._check_or_create()

    @property
    def location(self) -> str:
        return str(self.path)

    # --- opening -----------------------------------------------------------------------

    def _check_or_create(self) -> None:
        try:
            with self.path.open("rb") as existing:
                header = existing.read(len(SQLITE_HEADER))
        except FileNotFoundError:
            header = b""
        except OSError as exc:
            raise JournalUnusable(f"journal {self.path} cannot be read: {exc.strerror or exc}") from None
        if header and header != SQLITE_HEADER:
            raise JournalUnusable(f"journal {self.path} is not an SQLite database: it was not written by api-worker")
        try:
            db = self._db()
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if application_id == 0 and tables == 0:
                self._create(db)
                return
            if application_id != APPLICATION_ID:
                raise JournalUnusable(
                    f"journal {self.path} is an SQLite database of something else (application id {application_id}), "
                    "not an api-worker journal"
                )
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > FORMAT_VERSION:
                raise JournalUnusable(
                    f"journal {self.path} was written by a newer api-worker (journal format {version}; "
                    f"this one reads format {FORMAT_VERSION})"
                )
            # Reads every page a start-up needs: a damaged file says so now, not mid-job.
            db.execute("SELECT count(*) FROM deliveries").fetchone()
            if self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
                if verdict != "ok":
                    raise JournalUnusable(f"journal {self.path} is corrupt: {verdict}")
            self._upgrade(db, version)
        except sqlite3.Error as exc:
            raise JournalUnusable(f"journal {self.path} is corrupt: {exc}") from None
        except OSError as exc:
            raise JournalUnusable(f"journal {self.path} cannot be read: {exc.strerror or exc}") from None

    @staticmethod
    def _upgrade(db: sqlite3.Connection, version: int) -> None:
        """Bring a journal of an older format to this one, one format at a time."""
        for older in range(version, FORMAT_VERSION):
            db.executescript(f"BEGIN IMMEDIATE; {_UPGRADES[older]} PRAGMA user_version={older + 1}; COMMIT;")

    def _create(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the first table: lets pruning shrink the file
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(
            f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA application_id={APPLICATION_ID};"
            f" PRAGMA user_version={FORMAT_VERSION}; COMMIT;"
        )

    def _db(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = connect(self.path)
            self._local.connection = connection
        return connection

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        try:
            with self._writing, write_transaction(self._db()) as db:
                yield db
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"{what} in journal {self.path} failed: {exc}") from exc

    def _query(self, what: str, sql: str, parameters: Sequence[object]) -> list[tuple[object, ...]]:
        try:
            return list(self._db().execute(sql, parameters).fetchall())
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"{what} in journal {self.path} failed: {exc}") from exc

    # --- the interface -------------------------------------------------------------------

    def record(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        now = time.time()
        with self._transaction("recording outcomes") as db:
            for o in outcomes:
                cursor = db.execute(
                    "INSERT INTO outcomes (message_id, job_id, attempt, status, final, finished_at, state)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        o.message_id,
                        None if o.job_id == o.message_id else o.job_id,
                        o.attempt,
                        o.status,
                        o.final,
                        now,
                        RECORDED,
                    ),
                )
                db.execute(
                    "INSERT INTO deliveries (seq, receipt, reply_to, result, dead_letter, retry_in_s, group_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        cursor.lastrowid,
                        o.receipt,
                        o.reply_to,
                        o.result_json,
                        o.dead_letter_body,
                        o.retry_in_s,
                        o.group_id,
                    ),
                )

    def finished(self, message_ids: Sequence[str]) -> dict[str, FinishedJob]:
        if not message_ids:
            return {}
        marks = ", ".join("?" * len(message_ids))
        rows = self._query(
            "looking up messages",
            f"SELECT {_FINISHED_COLUMNS} FROM outcomes WHERE message_id IN ({marks}) AND final = 1",  # noqa: S608
            list(message_ids),
        )
        return {str(row[0]): _finished(row) for row in rows}

    def finished_job(self, job_id: str) -> FinishedJob | None:
        rows = self._query(
            "looking up a job id",
            f"SELECT {_FINISHED_COLUMNS} FROM outcomes WHERE final = 1 AND (job_id = ? OR "  # noqa: S608
            "(job_id IS NULL AND message_id = ?)) LIMIT 1",
            (job_id, job_id),
        )
        return _finished(rows[0]) if rows else None

    def mark_sent(self, keys: Sequence[OutcomeKey]) -> None:
        if keys:
            with self._transaction("marking results sent") as db:
                db.executemany(
                    "UPDATE deliveries SET result = NULL, dead_letter = NULL WHERE seq IN"
                    " (SELECT seq FROM outcomes WHERE message_id = ? AND attempt = ? AND state = 0)",
                    keys,
                )
                db.executemany("UPDATE outcomes SET state = 1 WHERE message_id = ? AND attempt = ? AND state = 0", keys)

    def mark_settled(self, keys: Sequence[OutcomeKey]) -> None:
        if keys:
            with self._transaction("marking messages settled") as db:
                db.executemany(
                    "DELETE FROM deliveries WHERE seq IN"
                    " (SELECT seq FROM outcomes WHERE message_id = ? AND attempt = ?)",
                    keys,
                )
                # A retry's outcome leaves nothing behind; a final one, its tombstone.
                db.executemany("DELETE FROM outcomes WHERE message_id = ? AND attempt = ? AND final = 0", keys)
                db.executemany("UPDATE outcomes SET state = 2 WHERE message_id = ? AND attempt = ?", keys)

    def unsettled(self) -> list[Outcome]:
        rows = self._query(
            "reading undelivered outcomes",
            "SELECT message_id, coalesce(job_id, message_id), attempt, status, final, receipt, coalesce(result, ''),"
            " reply_to, dead_letter, retry_in_s, group_id FROM deliveries JOIN outcomes USING (seq) ORDER BY seq",
            (),
        )
        return [
            Outcome(
                message_id=str(r[0]),
                job_id=str(r[1]),
                attempt=int(r[2]),  # type: ignore[call-overload]
                status=str(r[3]),
                final=bool(r[4]),
                receipt=str(r[5]),
                result_json=str(r[6]),
                reply_to=None if r[7] is None else str(r[7]),
                dead_letter_body=None if r[8] is None else str(r[8]),
                retry_in_s=None if r[9] is None else float(r[9]),  # type: ignore[arg-type]
                group_id=None if r[10] is None else str(r[10]),
            )
            for r in rows
        ]

    def prune(self, finished_before: float, limit: int) -> int:
        """Rows are numbered in the order they finished: read from the oldest and stop at the
        first one too young, so a prune never scans the whole table."""
        rows = self._query(
            "reading old outcomes", "SELECT seq, finished_at, state FROM outcomes ORDER BY seq LIMIT ?", (limit,)
        )
        old = [(seq,) for seq, state in _while_older(rows, finished_before) if state == SETTLED]
        if old:
            with self._transaction("pruning tombstones") as db:
                db.executemany("DELETE FROM outcomes WHERE seq = ?", old)
            try:
                # Through executescript: a plain execute steps the pragma once, which frees one page.
                self._db().executescript("PRAGMA incremental_vacuum;")
            except sqlite3.Error as exc:
                raise JournalError(f"vacuuming journal {self.path} failed: {exc}") from exc
        return len(old)

    def record_image_uses(self, uses: Sequence[ImageUse]) -> None:
        if uses:
            with self._transaction("recording image uses") as db:
                db.executemany(
                    "INSERT INTO images (reference, pulled, last_used) VALUES (?, ?, ?) ON CONFLICT (reference) DO"
                    " UPDATE SET pulled = max(pulled, excluded.pulled), last_used = max(last_used, excluded.last_used)",
                    [(use.reference, use.pulled, use.last_used) for use in uses],
                )

    def image_uses(self) -> list[ImageUse]:
        rows = self._query("reading image uses", "SELECT reference, pulled, last_used FROM images", ())
        return [ImageUse(str(r[0]), float(r[2]), bool(r[1])) for r in rows]  # type: ignore[arg-type]

    def forget_images(self, references: Sequence[str]) -> None:
        if references:
            with self._transaction("forgetting images") as db:
                db.executemany("DELETE FROM images WHERE reference = ?", [(reference,) for reference in references])

    def close(self) -> None:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _finished(row: tuple[object, ...]) -> FinishedJob:
    return FinishedJob(str(row[0]), str(row[1]), str(row[2]), float(row[3]), int(row[4]) >= SENT)  # type: ignore[arg-type, call-overload]


def _while_older(rows: list[tuple[object, ...]], before: float) -> Iterator[tuple[int, int]]:
    """(seq, state) of the leading rows that finished before `before`."""
    for seq, finished_at, state in rows:
        if float(finished_at) >= before:  # type: ignore[arg-type]
            return
        yield int(seq), int(state)  # type: ignore[call-overload]


def _lock(path: Path) -> IO[bytes]:
    """An exclusive lock beside the journal, held while the worker runs."""
    try:
        return hold_lock(path.with_name(f"{path.name}.lock"))
    except PathInUse as exc:
        raise JournalInUse(f"journal {path} is in use by another worker (pid {exc.holder})") from None
    except OSError as exc:
        raise JournalUnusable(f"journal {path} cannot be opened: {exc.strerror or exc}") from None

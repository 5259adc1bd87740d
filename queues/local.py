"""The embedded local queue: SQLite in WAL mode, with the SQS semantics of queues.base.

Several named queues live in one database file (the jobs queue, its results queue,
private reply queues). Every state change is one transaction, so a worker killed with
SIGKILL loses nothing: a received message simply becomes visible again when its
visibility timeout lapses.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from common.sqlite import connect, set_up, write_transaction
from queues.base import (
    POLL_INTERVAL_S,
    DeliveryProfile,
    JobQueue,
    OutgoingMessage,
    QueueDepth,
    QueueError,
    ReceivedMessage,
    Sendable,
    VisibilityChange,
    check_group_id,
    outgoing,
)
from queues.wakeup import WakeupListener, wake_listeners, wakeup_directory

log = logging.getLogger(__name__)
# Calls are local transactions: the supervisor's loop receives and settles itself, and batches
# results only briefly, while jobs run.
LOCAL_PROFILE = DeliveryProfile(calls_in_loop=True, result_batch_delay_s=0.005, flush_when_idle=True, prefetch=True)

DEFAULT_QUEUE_NAME = "jobs"
RESULTS_QUEUE_NAME = "results"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt_token TEXT,
    group_id TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at, seq);
"""
# Files made before message groups lack the column; it is added on opening.
_GROUP_INDEX = "CREATE INDEX IF NOT EXISTS messages_group ON messages (queue, group_id, seq) WHERE group_id IS NOT NULL"
# A message of a group is ready only once every earlier message of its group is gone (deleted):
# one message per group is out at a time, in the order they were sent.
_RECEIVABLE = """
SELECT seq FROM messages WHERE queue = ? AND visible_at <= ? AND (group_id IS NULL OR NOT EXISTS (
    SELECT 1 FROM messages AS earlier
    WHERE earlier.queue = messages.queue AND earlier.group_id = messages.group_id AND earlier.seq < messages.seq))
ORDER BY visible_at, seq LIMIT ?
"""
_INSERT = "INSERT INTO messages (queue, message_id, body, sent_at, visible_at, group_id) VALUES (?, ?, ?, ?, ?, ?)"
# A receipt handle is "SEQ:TOKEN": the row to find by primary key, and the token of the
# receive it came from, so that a handle from an earlier receive no longer matches.


def _receipt_row(receipt: str) -> tuple[int, str]:
    seq, _, token = receipt.partition(":")
    try:
        return int(seq), token
    except ValueError:
        return -1, token


def check_queue_name(name: str) -> None:
    if not _NAME_PATTERN.match(name):
        raise ValueError(f"local queue name {name!r} must be 1-80 characters of letters, digits, '.', '_' or '-'")


class LocalQueue:
    """One named queue in a SQLite file. Safe to share between threads."""

    def __init__(self, path: Path, name: str = DEFAULT_QUEUE_NAME) -> None:
        check_queue_name(name)
        self.path = path
        self.name = name
        self._local = threading.local()

    @property
    def spec(self) -> str:
        suffix = "" if self.name == DEFAULT_QUEUE_NAME else f"#{self.name}"
        return f"local:{self.path}{suffix}"

    @property
    def reply_address(self) -> str:
        return self.name

    def private_reply_queue(self) -> LocalQueue:
        return self.sibling(f"reply-{uuid.uuid4().hex}")

    def sibling(self, name: str) -> LocalQueue:
        return LocalQueue(self.path, name)

    def _db(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = connect(self.path)
                set_up(connection, _set_up)
            except (sqlite3.Error, OSError) as exc:
                raise QueueError(f"cannot open local queue {self.path}: {exc}", operation="open") from exc
            self._local.connection = connection
        return connection

    def send(self, message: Sendable) -> str:
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[Sendable]) -> list[str]:
        rows = _rows(self.name, messages, time.time())
        self._execute_many(_INSERT, rows)
        self._wake(self.name)
        return [str(row[1]) for row in rows]

    def listen(self) -> WakeupListener | None:
        """A pipe that becomes readable when a message may have become receivable here: sent,
        released, or next in its group. None if it cannot be made (then only polls find them)."""
        try:
            return WakeupListener(wakeup_directory(self.path), self.name)
        except OSError as exc:
            log.warning("cannot listen for new messages; polling only", extra={"queue": self.spec, "error": str(exc)})
            return None

    def _wake(self, *names: str) -> None:
        for name in dict.fromkeys(names):
            wake_listeners(wakeup_directory(self.path), name)

    def receive(self, max_messages: int, wait_seconds: float, visibility_timeout: float) -> list[ReceivedMessage]:
        deadline = time.monotonic() + wait_seconds
        while True:
            messages = self._receive_now(max_messages, visibility_timeout)
            if messages or time.monotonic() >= deadline:
                return messages
            time.sleep(POLL_INTERVAL_S)

    def _receive_now(self, max_messages: int, visibility_timeout: float) -> list[ReceivedMessage]:
        if max_messages <= 0:
            return []
        now = time.time()
        with self._transaction("receive", f"receive from {self.spec}") as db:
            rows = db.execute(_RECEIVABLE, (self.name, now, max_messages)).fetchall()
            received = []
            for (seq,) in rows:
                token = uuid.uuid4().hex
                row = db.execute(
                    "UPDATE messages SET visible_at = ?, receive_count = receive_count + 1, receipt_token = ?"
                    " WHERE seq = ? RETURNING message_id, body, receive_count, group_id, sent_at",
                    (now + visibility_timeout, token, seq),
                ).fetchone()
                message_id, body, count, group_id, sent_at = row
                receipt = f"{seq}:{token}"
                received.append(ReceivedMessage(message_id, receipt, body, count, group_id=group_id, sent_at=sent_at))
        return received

    @property
    def profile(self) -> DeliveryProfile:
        return LOCAL_PROFILE

    def job_message(self, body: str, group: str | None, job_id: str | None) -> OutgoingMessage:
        return OutgoingMessage(body, group)  # groups are optional here; `send` checks one given

    def attempts_limit(self, default: int) -> int:
        return default

    def settle(
        self,
        sends: Sequence[tuple[JobQueue, Sequence[Sendable]]],
        deletes: Sequence[str],
        retries: Sequence[VisibilityChange],
    ) -> bool:
        """Send results (to queues in this file) and delete or hide their messages, atomically:
        a message is never gone without its result, nor a result sent twice for one receive."""
        here: list[tuple[LocalQueue, Sequence[Sendable]]] = []
        for queue, messages in sends:
            if not isinstance(queue, LocalQueue) or queue.path != self.path:
                return False
            here.append((queue, messages))
        now = time.time()
        rows = [row for queue, messages in here for row in _rows(queue.name, messages, now)]
        with self._transaction("settle", f"settling messages on {self.spec}") as db:
            db.executemany(_INSERT, rows)
            groups_freed = _delete(db, self.name, deletes)
            db.executemany(
                "UPDATE messages SET visible_at = ? WHERE seq = ? AND receipt_token = ? AND queue = ?",
                [(now + change.timeout_s, *_receipt_row(change.receipt), self.name) for change in retries],
            )
        self._wake(*(queue.name for queue, _ in here), *([self.name] if groups_freed else []))
        return True

    def delete(self, receipts: Sequence[str]) -> None:
        if not receipts:
            return
        with self._transaction("delete", f"delete on {self.spec}") as db:
            groups_freed = _delete(db, self.name, receipts)
        if groups_freed:
            self._wake(self.name)

    def change_visibility(self, changes: Sequence[VisibilityChange]) -> None:
        now = time.time()
        self._execute_many(
            "UPDATE messages SET visible_at = ? WHERE seq = ? AND receipt_token = ? AND queue = ?",
            [(now + change.timeout_s, *_receipt_row(change.receipt), self.name) for change in changes],
        )
        if any(change.timeout_s <= 0 for change in changes):
            self._wake(self.name)

    def backlog(self) -> QueueDepth:
        try:
            now = time.time()
            row = self._db().execute(
                "SELECT COALESCE(SUM(visible_at <= ?), 0), COALESCE(SUM(visible_at > ? AND receive_count > 0), 0)"
                " FROM messages WHERE queue = ?",
                (now, now, self.name),
            )
            visible, in_flight = row.fetchone()
            return QueueDepth(int(visible), int(in_flight))
        except sqlite3.Error as exc:
            raise QueueError(f"cannot read local queue {self.path}: {exc}", operation="read") from exc

    def count(self) -> int:
        """How many messages the queue holds, visible or not."""
        try:
            row = self._db().execute("SELECT COUNT(*) FROM messages WHERE queue = ?", (self.name,))
            return int(row.fetchone()[0])
        except sqlite3.Error as exc:
            raise QueueError(f"cannot read local queue {self.path}: {exc}", operation="read") from exc

    def drop(self) -> None:
        """Delete every message of this queue (used for private reply queues)."""
        self._execute("DELETE FROM messages WHERE queue = ?", (self.name,))

    def _execute(self, sql: str, parameters: tuple[object, ...]) -> None:
        self._execute_many(sql, [parameters])

    def _execute_many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        if not rows:
            return
        operation = sql.split(maxsplit=1)[0].lower()
        with self._transaction(operation, f"{operation} on {self.spec}") as db:
            db.executemany(sql, rows)

    @contextmanager
    def _transaction(self, operation: str, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; a failure becomes a QueueError saying `what` failed."""
        db = self._db()
        try:
            with write_transaction(db):
                yield db
        except sqlite3.Error as exc:
            raise QueueError(f"{what} failed: {exc}", operation=operation) from exc


def _delete(db: sqlite3.Connection, queue_name: str, receipts: Sequence[str]) -> bool:
    """Delete the messages; True if one of them was in a group, whose next message it lets out."""
    groups_freed = False
    for receipt in receipts:
        deleted = db.execute(
            "DELETE FROM messages WHERE seq = ? AND receipt_token = ? AND queue = ? RETURNING group_id",
            (*_receipt_row(receipt), queue_name),
        ).fetchone()
        groups_freed = groups_freed or (deleted is not None and deleted[0] is not None)
    return groups_freed


def _rows(queue_name: str, messages: Sequence[Sendable], now: float) -> list[tuple[object, ...]]:
    """Rows for `_INSERT`: the queue's name, a new message id, the body, times, the group."""
    rows: list[tuple[object, ...]] = []
    for message in map(outgoing, messages):
        if message.group_id is not None:
            check_group_id(message.group_id)
        rows.append((queue_name, str(uuid.uuid4()), message.body, now, now + message.delay_s, message.group_id))
    return rows


def _set_up(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA journal_mode=WAL")
    # Read pages through a memory map rather than a system call per page.
    connection.execute("PRAGMA mmap_size=268435456")
    connection.executescript(_SCHEMA)
    _add_group_column(connection)


def _add_group_column(connection: sqlite3.Connection) -> None:
    columns = {row[1] for row in connection.execute("PRAGMA table_info(messages)")}
    if "group_id" not in columns:
        try:
            connection.execute("ALTER TABLE messages ADD COLUMN group_id TEXT")
        except sqlite3.OperationalError as exc:  # another process added it meanwhile
            if "duplicate column" not in str(exc):
                raise
    connection.execute(_GROUP_INDEX)

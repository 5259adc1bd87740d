"""SQLite as the embedded queue and the journal use it: one write transaction at a time."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_S = 30  # how long a write waits for another connection's write lock


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit: `write_transaction`) for a
    database in WAL mode."""
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    # NORMAL in WAL mode: a committed write survives a crash of any process (what a SIGKILL
    # or an OOM kill is); only a power loss may roll back the last transactions.
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (the write lock up front, so two writers never deadlock on an upgrade),
    COMMIT at the end, ROLLBACK on any exception, which is raised on. `db` must be in
    autocommit mode (isolation_level=None)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise

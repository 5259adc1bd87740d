"""SQLite as the embedded queue and the journal use it: one write transaction at a time."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
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


def set_up(connection: sqlite3.Connection, setup: Callable[[sqlite3.Connection], None]) -> None:
    """Run `setup` (journal mode, schema) on a new connection, again while another process is
    setting the same file up: there SQLite may answer `database is locked` at once, without its
    busy wait (switching to WAL needs the file to itself). Gives up after BUSY_TIMEOUT_S."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            setup(connection)
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
            if connection.in_transaction:
                connection.rollback()
        time.sleep(random.uniform(0.005, 0.05))  # noqa: S311 (spreads the retries, nothing secret)

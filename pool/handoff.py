"""Handing a job to a child without ever blocking the supervisor's loop.

Whenever a slot is idle its pipe is empty (the child took its last assignment before it
reported), so an assignment smaller than the pipe's capacity is written at once, whatever
state the child is in. A larger one (a big body) is written by a short-lived thread, which
waits for the child to read it, or fails once a hung child is killed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler

from common import faults
from monitoring.metrics import record_thread_failure
from pool.wire import JobAssignment

log = logging.getLogger(__name__)

DIRECT_BYTES = 32 * 1024  # well under Linux's 64 KiB pipe capacity


def hand_over(connection: Connection, assignment: JobAssignment) -> None:
    data = bytes(ForkingPickler.dumps(assignment))
    if len(data) <= DIRECT_BYTES:
        with contextlib.suppress(OSError):  # the child just died: its exit (SlotTable.replace) hands the job on
            connection.send_bytes(data)
        return
    threading.Thread(target=_send, args=(connection, data), name="hand-over", daemon=True).start()


def _send(connection: Connection, data: bytes) -> None:
    """A failure here costs no job: a child that never takes its job is replaced and the job
    handed on (the slot table's confirmation)."""
    try:
        faults.check("hand-over")
        connection.send_bytes(data)
    except OSError:
        pass  # the child died or was replaced meanwhile
    except Exception:
        record_thread_failure("hand-over")
        log.exception("handing a job to its child failed; the child will be replaced")

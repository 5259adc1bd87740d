"""Queue backends behind one interface (queues.base.JobQueue)."""

from __future__ import annotations

import os
from pathlib import Path

from queues.base import JobQueue
from queues.local import DEFAULT_QUEUE_NAME, RESULTS_QUEUE_NAME, LocalQueue


def default_state_dir() -> Path:
    """Where the worker keeps its embedded queue and scratch space by default."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "api-worker"


def default_queue_spec() -> str:
    return f"local:{default_state_dir() / 'queue.sqlite3'}"


def open_queue(spec: str) -> JobQueue:
    """Open a queue from its command-line spec: `local:PATH[#NAME]`."""
    if spec.startswith("local:"):
        location, _, name = spec[len("local:") :].partition("#")
        if not location:
            raise ValueError(f"queue spec {spec!r} names no file: use local:PATH")
        queue = LocalQueue(Path(location).expanduser().absolute(), name or DEFAULT_QUEUE_NAME)
        queue.count()  # fail now, with the path in the message, if the file cannot be used
        return queue
    raise ValueError(f"unsupported queue spec {spec!r}: use local:PATH[#NAME]")


def default_result_queue(job_queue: JobQueue) -> JobQueue:
    """The companion results queue of a jobs queue."""
    if isinstance(job_queue, LocalQueue):
        return job_queue.sibling(RESULTS_QUEUE_NAME)
    raise ValueError(f"queue {job_queue.spec} has no default result queue: give --result-queue")

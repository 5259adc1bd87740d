"""Where results go: the worker's result queue, or the queue a message's `reply_to` names,
looked up (SQS: get_queue_url) on the outbox's thread, never the loop, and cached."""

from __future__ import annotations

import logging
import threading

from common.clock import SYSTEM_CLOCK, Clock
from queues.base import JobQueue

log = logging.getLogger(__name__)
UNUSABLE_TTL_S = 60.0  # how long a reply_to that names no queue is not asked about again


class Destinations:
    def __init__(self, job_queue: JobQueue, result_queue: JobQueue | None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.job_queue = job_queue
        self.result_queue = result_queue
        self._lock = threading.Lock()
        self._known: dict[str, JobQueue] = {}
        self._unusable_until: dict[str, float] = {}

    def resolve(self, reply_to: str | None) -> JobQueue | None:
        """The queue for a result (None: the log is its only record). A `reply_to` naming no
        usable queue falls back to the result queue; QueueError when the backend cannot be
        asked (retry later)."""
        if reply_to is None:
            return self.result_queue
        with self._lock:
            known = self._known.get(reply_to)
            unusable = self._unusable_until.get(reply_to, 0.0) > self.clock.monotonic()
        if known is not None:
            return known
        if unusable:
            return self.result_queue
        try:
            queue = self.job_queue.sibling(reply_to)
        except ValueError as exc:
            log.warning(
                "unusable reply_to; result sent to the result queue", extra={"reply_to": reply_to, "error": str(exc)}
            )
            with self._lock:
                self._unusable_until[reply_to] = self.clock.monotonic() + UNUSABLE_TTL_S
            return self.result_queue
        with self._lock:
            self._known[reply_to] = queue
        return queue

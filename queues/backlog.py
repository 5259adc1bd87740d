"""The queue's depth (visible backlog, messages in flight) for the scaling signal, asked at most once per `max_age_s`
however often it is read (an autoscaler and Prometheus may both poll), and never from the
supervisor's loop. A queue that cannot be asked gives None, logged once until it answers."""

from __future__ import annotations

import logging
import threading
import time

from queues.base import JobQueue, QueueDepth, QueueError

log = logging.getLogger(__name__)
BACKLOG_MAX_AGE_S = 5.0


class CachedBacklog:
    def __init__(self, queue: JobQueue, max_age_s: float = BACKLOG_MAX_AGE_S) -> None:
        self.queue = queue
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._asked_at: float | None = None
        self._value: QueueDepth | None = None
        self._failing = False

    def __call__(self) -> QueueDepth | None:
        with self._lock:
            now = time.monotonic()
            if self._asked_at is not None and now - self._asked_at < self.max_age_s:
                return self._value
            self._asked_at = now
            try:
                self._value = self.queue.backlog()
            except QueueError as exc:
                if not self._failing:
                    log.warning("the queue's backlog is unknown", extra={"queue": self.queue.spec, "error": str(exc)})
                self._failing, self._value = True, None
                return None
            self._failing = False
            return self._value

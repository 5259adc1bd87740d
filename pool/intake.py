"""The intake thread: receives messages for free slots only, so the worker never hoards."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from queues.base import JobQueue, QueueError, ReceivedMessage, VisibilityChange

log = logging.getLogger(__name__)
MAX_BATCH = 10  # what one SQS ReceiveMessage call may return
ERROR_BACKOFF_S = (0.5, 1, 2, 5, 10, 20)


class Intake(threading.Thread):
    def __init__(
        self,
        queue: JobQueue,
        *,
        visibility_timeout: float,
        wait_seconds: float,
        wake: Callable[[], None],
    ) -> None:
        super().__init__(name="intake", daemon=True)
        self.queue = queue
        self.visibility_timeout = visibility_timeout
        self.wait_seconds = wait_seconds
        self._wake = wake
        self._condition = threading.Condition()
        self._free_slots = 0
        self._undelivered: list[ReceivedMessage] = []
        self._stopping = False

    def offer(self, free_slots: int) -> None:
        """Tell the intake how many slots are free and have no message waiting for them."""
        with self._condition:
            self._free_slots = free_slots
            self._condition.notify()

    def take(self) -> list[ReceivedMessage]:
        with self._condition:
            messages, self._undelivered = self._undelivered, []
            self._free_slots -= len(messages)
            return messages

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()

    def _wanted(self) -> int:
        return min(MAX_BATCH, self._free_slots - len(self._undelivered))

    def run(self) -> None:
        failures = 0
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._stopping or self._wanted() > 0)
                if self._stopping:
                    return
                wanted = self._wanted()
            try:
                messages = self.queue.receive(wanted, self.wait_seconds, self.visibility_timeout)
                failures = 0
            except QueueError as exc:
                delay = ERROR_BACKOFF_S[min(failures, len(ERROR_BACKOFF_S) - 1)]
                failures += 1
                log.error(
                    "receive failed; retrying", extra={"queue": self.queue.spec, "error": str(exc), "retry_in_s": delay}
                )
                time.sleep(delay)
                continue
            with self._condition:
                if self._stopping:
                    self._release(messages)
                    return
                self._undelivered.extend(messages)
            if messages:
                self._wake()

    def _release(self, messages: list[ReceivedMessage]) -> None:
        try:
            self.queue.change_visibility([VisibilityChange(m.receipt, 0) for m in messages])
        except QueueError as exc:
            log.error("could not release messages received during shutdown", extra={"error": str(exc)})

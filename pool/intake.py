"""Intake: receives messages for free slots only, so the worker never hoards."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from monitoring.metrics import record_queue_error
from pool import faults
from pool.thread_health import ThreadHealth
from queues.base import BATCH_MAX, JobQueue, QueueError, ReceivedMessage, VisibilityChange

log = logging.getLogger(__name__)
# While this worker holds a message group, its own delete or release is what frees the group's
# next messages; a long poll begun before that may not see them (moto's does not). So polls are
# short then, and for a while after, until the worker's deletes and releases have gone out.
GROUP_HELD_POLL_S = 1
GROUP_HELD_LINGER_S = 5.0


class _ReceiveBackoff:
    """How long to wait after failed receives: longer each time, reset by a success."""

    DELAYS_S = (0.5, 1, 2, 5, 10, 20)

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.failures = 0

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, exc: QueueError) -> float:
        delay = self.DELAYS_S[min(self.failures, len(self.DELAYS_S) - 1)]
        self.failures += 1
        record_queue_error(exc.operation)
        log.error("receive failed; retrying", extra={"queue": self.queue.spec, "error": str(exc), "retry_in_s": delay})
        return delay


class Intake(threading.Thread):
    """Intake for a remote queue: a thread long-polls, so the supervisor's loop never waits
    on the network."""

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
        self._short_polls_until = 0.0
        self._undelivered: list[ReceivedMessage] = []
        self._stopping = False
        self.health = ThreadHealth("intake")

    def offer(self, free_slots: int, *, groups_held: bool = False) -> None:
        """Tell the intake how many slots are free and have no message waiting for them, and
        whether this worker holds a message group."""
        with self._condition:
            self._free_slots = free_slots
            if groups_held:
                self._short_polls_until = time.monotonic() + GROUP_HELD_LINGER_S
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

    def seconds_to_next_poll(self) -> float | None:
        return None  # the thread wakes the loop when messages arrive

    def _wanted(self) -> int:
        return min(BATCH_MAX, self._free_slots - len(self._undelivered))

    def problem(self) -> str | None:
        return self.health.problem(alive=self.is_alive() or self.ident is None or self._stopping)

    def run(self) -> None:
        """Survives anything: an unexpected exception is logged and the receive loop runs again
        after a growing delay, shown meanwhile in the worker's health."""
        backoff = _ReceiveBackoff(self.queue)
        while True:
            try:
                if not self._receive_once(backoff):
                    return
            except Exception as exc:
                delay = self.health.failed(exc)
                log.exception("intake failed unexpectedly; restarting it", extra={"retry_in_s": delay})
                with self._condition:
                    self._condition.wait_for(lambda: self._stopping, timeout=delay)

    def _receive_once(self, backoff: _ReceiveBackoff) -> bool:
        """One receive for the free slots; False once stopping."""
        with self._condition:
            self._condition.wait_for(lambda: self._stopping or self._wanted() > 0)
            if self._stopping:
                return False
            wanted = self._wanted()
            short = time.monotonic() < self._short_polls_until
            wait_seconds = min(self.wait_seconds, GROUP_HELD_POLL_S) if short else self.wait_seconds
        faults.check("intake")
        try:
            messages = self.queue.receive(wanted, wait_seconds, self.visibility_timeout)
            backoff.succeeded()
        except QueueError as exc:
            time.sleep(backoff.failed(exc))
            return True
        self.health.succeeded()
        with self._condition:
            if self._stopping:
                self._release(messages)
                return False
            self._undelivered.extend(messages)
            if any(message.group_id for message in messages):  # held from now on, before the loop says so
                self._short_polls_until = time.monotonic() + GROUP_HELD_LINGER_S
        if messages:
            self._wake()
        return True

    def _release(self, messages: list[ReceivedMessage]) -> None:
        try:
            self.queue.change_visibility([VisibilityChange(m.receipt, 0) for m in messages])
        except QueueError as exc:
            record_queue_error(exc.operation)
            log.error("could not release messages received during shutdown", extra={"error": str(exc)})


class PollingIntake:
    """Intake for a queue on this machine (the embedded queue): a receive costs a local
    transaction, so the supervisor's loop receives itself, with no thread to hand off to.
    While slots are free and the queue is empty it polls every `poll_interval_s`."""

    def __init__(self, queue: JobQueue, *, visibility_timeout: float, poll_interval_s: float) -> None:
        self.queue = queue
        self.visibility_timeout = visibility_timeout
        self.poll_interval_s = poll_interval_s
        self._free_slots = 0
        self._next_poll = 0.0
        self._backoff = _ReceiveBackoff(queue)
        self._stopping = False

    def start(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass

    def problem(self) -> str | None:
        return None  # no thread: the loop receives itself

    def stop(self) -> None:
        self._stopping = True

    def offer(self, free_slots: int, *, groups_held: bool = False) -> None:
        self._free_slots = free_slots

    def seconds_to_next_poll(self) -> float | None:
        if self._stopping or self._free_slots <= 0:
            return None
        return max(0.0, self._next_poll - time.monotonic())

    def take(self) -> list[ReceivedMessage]:
        now = time.monotonic()
        if self._stopping or self._free_slots <= 0 or now < self._next_poll:
            return []
        try:
            messages = self.queue.receive(min(BATCH_MAX, self._free_slots), 0, self.visibility_timeout)
            self._backoff.succeeded()
        except QueueError as exc:
            self._next_poll = now + self._backoff.failed(exc)
            return []
        self._free_slots -= len(messages)
        if not messages:
            self._next_poll = now + self.poll_interval_s
        return messages

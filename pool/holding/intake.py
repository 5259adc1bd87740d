"""Intake: receives messages for idle slots, and the few more that prefetch allows."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from common import faults
from common.thread_health import ThreadHealth
from monitoring.metrics import record_queue_error, record_thread_failure
from pool.holding.prefetch import NOTHING_WANTED, ReceiveRequest
from queues.base import JobQueue, QueueError, ReceivedMessage, VisibilityChange, Wakeups

log = logging.getLogger(__name__)
# While this worker holds a message group, its own delete or release is what frees the group's
# next messages; a long poll begun before that may not see them (moto's does not). So polls are
# short then, and for a while after, until the worker's deletes and releases have gone out.
GROUP_HELD_POLL_S = 1
GROUP_HELD_LINGER_S = 5.0
# With wake-ups the embedded queue's intake learns of sent and released messages at once;
# its polls only find those whose delay or visibility timeout ran out.
POLL_WITH_WAKEUPS_S = 0.25


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


class Intake:
    """Intake for a remote queue: threads receive, so the supervisor's loop never waits on the
    network. One receive is in flight at a time while the queue has little to give (a long poll
    when idle: the idle request rate does not grow); while receives come back full, up to
    `receives_in_flight` overlap, so that a slow endpoint's round trips never leave a slot
    waiting. Each receive asks for what is wanted beyond what is held and already asked for."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        visibility_timeout: float,
        wait_seconds: float,
        wake: Callable[[], None],
        receives_in_flight: int = 1,
    ) -> None:
        self.queue = queue
        self.visibility_timeout = visibility_timeout
        self.wait_seconds = wait_seconds
        self._wake = wake
        self._condition = threading.Condition()
        self._request = NOTHING_WANTED
        self._short_polls_until = 0.0
        self._undelivered: list[ReceivedMessage] = []
        self._asked = 0  # messages asked for by the receives in flight
        self._in_flight = 0
        self._backlog = False  # the last receive brought all it asked for: the queue has more
        self._paused_until = 0.0  # after a failed receive
        self._backoff = _ReceiveBackoff(queue)
        self._stopping = False
        self._threads = [
            threading.Thread(name=f"intake-{i}", target=self._serve, daemon=True) for i in range(receives_in_flight)
        ]
        self.health = ThreadHealth("intake", record_thread_failure)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def is_alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def offer(self, request: ReceiveRequest, *, groups_held: bool = False) -> None:
        """Tell the intake what to receive, and whether this worker holds a message group."""
        with self._condition:
            self._request = request
            if groups_held:
                self._short_polls_until = time.monotonic() + GROUP_HELD_LINGER_S
            # Offered on every turn of the loop: a thread woken only to find nothing wanted
            # would cost a thread switch per job.
            if self._may_receive():
                self._condition.notify()

    def take(self) -> list[ReceivedMessage]:
        with self._condition:
            messages, self._undelivered = self._undelivered, []
            self._request = self._request.less(len(messages))
            return messages

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()

    wakeups = None  # the threads wake the loop themselves when messages arrive

    def woken(self) -> None:
        pass

    def next_due(self) -> float | None:
        return None  # the threads poll; they wake the loop when messages arrive

    def _wanted(self) -> int:
        return self._request.count(len(self._undelivered) + self._asked)

    def _may_receive(self) -> bool:
        if self._wanted() <= 0 or time.monotonic() < self._paused_until:
            return False
        return self._in_flight == 0 or (self._backlog and self._in_flight < len(self._threads))

    def problem(self) -> str | None:
        started = all(thread.ident is not None for thread in self._threads)
        return self.health.problem(alive=self.is_alive() or not started or self._stopping)

    def _serve(self) -> None:
        """Survives anything: an unexpected exception is logged and the receive loop runs again
        after a growing delay, shown meanwhile in the worker's health."""
        while True:
            try:
                if not self._receive_once():
                    return
            except Exception as exc:
                delay = self.health.failed(exc)
                log.exception("intake failed unexpectedly; restarting it", extra={"retry_in_s": delay})
                with self._condition:
                    self._condition.wait_for(lambda: self._stopping, timeout=delay)

    def _next_receive(self) -> tuple[int, float] | None:
        """Waits until a receive may go out; how many it asks for and how long it waits (None:
        stopping). Called holding the condition."""
        while not self._stopping:
            if self._may_receive():
                wanted = self._wanted()
                short = time.monotonic() < self._short_polls_until
                self._asked += wanted
                self._in_flight += 1
                if self._may_receive():  # more is wanted than one receive brings
                    self._condition.notify()
                return wanted, min(self.wait_seconds, GROUP_HELD_POLL_S) if short else self.wait_seconds
            paused = self._paused_until - time.monotonic()
            self._condition.wait(paused if paused > 0 else None)
        return None

    def _receive_once(self) -> bool:
        """One receive for the free slots and the messages to hold; False once stopping."""
        with self._condition:
            receive = self._next_receive()
        if receive is None:
            return False
        wanted, wait_seconds = receive
        messages: list[ReceivedMessage] = []
        try:
            faults.check("intake")
            messages = self.queue.receive(wanted, wait_seconds, self.visibility_timeout)
        except QueueError as exc:
            with self._condition:
                self._paused_until = time.monotonic() + self._backoff.failed(exc)
        else:
            with self._condition:
                self._backoff.succeeded()
            self.health.succeeded()
        finally:
            with self._condition:
                self._asked -= wanted
                self._in_flight -= 1
                self._backlog = len(messages) >= wanted
                self._condition.notify_all()
        return self._deliver(messages)

    def _deliver(self, messages: list[ReceivedMessage]) -> bool:
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
        if not messages:
            return
        try:
            self.queue.change_visibility([VisibilityChange(m.receipt, 0) for m in messages])
        except QueueError as exc:
            record_queue_error(exc.operation)
            log.error("could not release messages received during shutdown", extra={"error": str(exc)})


class PollingIntake:
    """Intake for a queue on this machine (the embedded queue): a receive costs a local
    transaction, so the supervisor's loop receives itself, with no thread to hand off to.
    It receives when woken by the queue (a message sent, released, or next in its group),
    else polls every `poll_interval_s` while it wants messages and the queue is empty (for
    messages whose delay or visibility timeout ran out)."""

    def __init__(self, queue: JobQueue, *, visibility_timeout: float, poll_interval_s: float) -> None:
        self.queue = queue
        self.visibility_timeout = visibility_timeout
        self.poll_interval_s = poll_interval_s
        self._request = NOTHING_WANTED
        self._next_poll = 0.0
        self._backoff = _ReceiveBackoff(queue)
        self._stopping = False
        self.wakeups: Wakeups | None = None

    def start(self) -> None:
        self.wakeups = self.queue.listen()
        if self.wakeups is not None:
            self.poll_interval_s = max(self.poll_interval_s, POLL_WITH_WAKEUPS_S)

    def is_alive(self) -> bool:
        return False  # no thread

    def join(self, timeout: float | None = None) -> None:
        if self.wakeups is not None:
            self.wakeups.close()
            self.wakeups = None

    def problem(self) -> str | None:
        return None  # no thread: the loop receives itself

    def stop(self) -> None:
        self._stopping = True

    def woken(self) -> None:
        """The queue says a message may be receivable: poll at once."""
        if self.wakeups is not None:
            self.wakeups.drain()
        self._next_poll = 0.0

    def offer(self, request: ReceiveRequest, *, groups_held: bool = False) -> None:
        self._request = request

    def next_due(self) -> float | None:
        """When the loop must next call `take` to poll (monotonic), if it wants messages."""
        if self._stopping or not self._request.count(0):
            return None
        return self._next_poll

    def take(self) -> list[ReceivedMessage]:
        now = time.monotonic()
        wanted = self._request.count(0)
        if self._stopping or not wanted or now < self._next_poll:
            return []
        try:
            messages = self.queue.receive(wanted, 0, self.visibility_timeout)
            self._backoff.succeeded()
        except QueueError as exc:
            self._next_poll = now + self._backoff.failed(exc)
            return []
        self._request = self._request.less(len(messages))
        if not messages:
            self._next_poll = now + self.poll_interval_s
        return messages


AnyIntake = Intake | PollingIntake

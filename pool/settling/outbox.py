"""Queue calls the supervisor's loop hands off: deliveries, visibility changes, releases.

For a remote queue (SQS) they run on a thread, so the loop never waits on the network; for
the embedded queue they run at once, in the loop: a local transaction is quicker than a
hand-off. Either way a call that fails is retried with exponential backoff and jitter until
its deadline (a heartbeat's is the message's visibility; a delivery has none).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from common import faults
from common.thread_health import ThreadHealth
from monitoring.metrics import record_queue_error, record_thread_failure
from queues.base import QueueError

log = logging.getLogger(__name__)
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 15.0


@dataclass(order=True)
class _Call:
    due: float
    order: int
    name: str = field(compare=False)
    call: Callable[[], None] = field(compare=False)
    deadline: float = field(compare=False)
    failures: int = field(default=0, compare=False)
    ordered: bool = field(default=True, compare=False)


def _retry_delay(failures: int) -> float:
    delay: float = min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (failures - 1))
    return delay * random.uniform(0.5, 1.0)  # noqa: S311


def _attempt(item: _Call, health: ThreadHealth) -> bool:
    """Make the call; False: it failed and is due again at `item.due` (True: done or given up).
    An unexpected exception (a bug) is retried like a queue error, never lost, and shows in
    the worker's health until a call goes through."""
    try:
        faults.check("outbox")
        item.call()
        health.succeeded()
        if item.failures:
            log.info("queue call went through after retries", extra={"call": item.name, "retries": item.failures})
        return True
    except QueueError as exc:
        record_queue_error(exc.operation)
        error = str(exc)
    except Exception as exc:
        health.failed(exc)
        log.exception("queue call failed unexpectedly", extra={"call": item.name})
        error = f"{type(exc).__name__}: {exc}"
    item.failures += 1
    delay = _retry_delay(item.failures)
    if time.monotonic() + delay > item.deadline:
        log.error("queue call given up", extra={"call": item.name, "error": error, "attempts": item.failures})
        return True
    log.warning("queue call failed; retrying", extra={"call": item.name, "error": error, "retry_in_s": delay})
    item.due = time.monotonic() + delay
    return False


class Outbox(Protocol):
    def start(self) -> None: ...

    def submit(self, name: str, call: Callable[[], None], deadline: float, *, ordered: bool = True) -> None:
        """Make `call`, retried with backoff until it goes through or `deadline` (monotonic)
        passes; `ordered=False`: it may overlap other such calls (it touches no message that
        they do)."""
        ...

    def run_due(self) -> None:
        """Retry the calls that are due, where the loop makes them."""
        ...

    def next_due(self) -> float | None:
        """When the loop must next call `run_due` (monotonic), if ever."""
        ...

    def pending(self) -> int: ...

    def problem(self) -> str | None: ...

    def stop(self, timeout: float) -> None: ...


class InlineOutbox:
    """Runs each call at once, in the loop; a call that fails is run again, with backoff, when
    the loop next asks (`run_due`), until its deadline."""

    def __init__(self) -> None:
        self._failed: list[_Call] = []
        self._order = itertools.count()
        self.health = ThreadHealth("outbox", record_thread_failure)

    def start(self) -> None:
        pass

    def submit(self, name: str, call: Callable[[], None], deadline: float, *, ordered: bool = True) -> None:
        self._run(_Call(time.monotonic(), next(self._order), name, call, deadline))

    def run_due(self) -> None:
        now = time.monotonic()
        due = [item for item in self._failed if item.due <= now]
        self._failed = [item for item in self._failed if item.due > now]
        for item in due:
            self._run(item)

    def next_due(self) -> float | None:
        return min((item.due for item in self._failed), default=None)

    def pending(self) -> int:
        return len(self._failed)

    def problem(self) -> str | None:
        return self.health.problem()

    def _run(self, item: _Call) -> None:
        if not _attempt(item, self.health):
            self._failed.append(item)

    def stop(self, timeout: float) -> None:
        if self._failed:
            log.warning("queue calls left undone at exit", extra={"calls": [c.name for c in self._failed]})


class ThreadOutbox:
    """Runs calls on a few threads, so that a slow endpoint's round trips overlap: the result
    sends and deletes of one batch go out while the next batch's do. A call submitted as
    `ordered` (a visibility change: a heartbeat, a release) starts only once every call submitted
    before it has been made once, and every call submitted after it waits for it; other calls
    (deliveries of separate messages) overlap one another. A call that failed is retried when its
    backoff is over, on any thread."""

    def __init__(self, threads: int = 1) -> None:
        self._condition = threading.Condition()
        self._fresh: deque[_Call] = deque()  # not yet made, in submission order
        self._retries: list[_Call] = []  # failed once or more: a heap by due time
        self._first_attempts = 0  # calls being made for the first time
        self._ordered_first_attempt = False  # one of them is ordered
        self._order = itertools.count()
        self._stopping = False
        self._threads = [threading.Thread(name=f"outbox-{i}", target=self._serve, daemon=True) for i in range(threads)]
        self.health = ThreadHealth("outbox", record_thread_failure)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, name: str, call: Callable[[], None], deadline: float, *, ordered: bool = True) -> None:
        with self._condition:
            self._fresh.append(_Call(time.monotonic(), next(self._order), name, call, deadline, ordered=ordered))
            self._condition.notify()

    def run_due(self) -> None:
        pass  # the threads run calls when they are due

    def next_due(self) -> float | None:
        return None  # the threads run calls when they are due

    def pending(self) -> int:
        with self._condition:
            return len(self._fresh) + len(self._retries)

    def stop(self, timeout: float) -> None:
        """Finish what is queued, for at most `timeout` seconds."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._condition:
            left = [c.name for c in (*self._fresh, *self._retries)]
        if left:
            log.warning("queue calls left undone at exit", extra={"calls": left})

    def is_alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def problem(self) -> str | None:
        started = all(thread.ident is not None for thread in self._threads)
        return self.health.problem(alive=self.is_alive() or not started or self._stopping)

    def _next_fresh(self) -> _Call | None:
        """The next call to make for the first time, if the order allows it now."""
        if not self._fresh or self._ordered_first_attempt:
            return None
        if self._fresh[0].ordered and self._first_attempts:
            return None
        return self._fresh.popleft()

    def _take(self) -> tuple[_Call, bool] | None:
        """The next call to make, and whether it is a first attempt; None once stopped with
        nothing left."""
        with self._condition:
            while True:
                now = time.monotonic()
                if self._retries and self._retries[0].due <= now:
                    return heapq.heappop(self._retries), False
                fresh = self._next_fresh()
                if fresh is not None:
                    self._first_attempts += 1
                    self._ordered_first_attempt = fresh.ordered
                    return fresh, True
                if self._stopping and not self._fresh and not self._retries and not self._first_attempts:
                    return None
                self._condition.wait(self._retries[0].due - now if self._retries else None)

    def _serve(self) -> None:
        while (taken := self._take()) is not None:
            item, first = taken
            done = _attempt(item, self.health)
            with self._condition:
                if first:
                    self._first_attempts -= 1
                    self._ordered_first_attempt = False
                if not done:
                    heapq.heappush(self._retries, item)
                self._condition.notify_all()

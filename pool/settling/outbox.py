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

    def submit(self, name: str, call: Callable[[], None], deadline: float) -> None:
        """Make `call`, retried with backoff until it goes through or `deadline` (monotonic) passes."""
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

    def submit(self, name: str, call: Callable[[], None], deadline: float) -> None:
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


class ThreadOutbox(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="outbox", daemon=True)
        self._condition = threading.Condition()
        self._calls: list[_Call] = []
        self._order = itertools.count()
        self._stopping = False
        self.health = ThreadHealth("outbox", record_thread_failure)

    def submit(self, name: str, call: Callable[[], None], deadline: float) -> None:
        with self._condition:
            heapq.heappush(self._calls, _Call(time.monotonic(), next(self._order), name, call, deadline))
            self._condition.notify()

    def run_due(self) -> None:
        pass  # the thread runs calls when they are due

    def next_due(self) -> float | None:
        return None  # the thread runs calls when they are due

    def pending(self) -> int:
        with self._condition:
            return len(self._calls)

    def stop(self, timeout: float) -> None:
        """Finish what is queued, for at most `timeout` seconds."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self.join(timeout)
        with self._condition:
            if self._calls:
                log.warning("queue calls left undone at exit", extra={"calls": [c.name for c in self._calls]})

    def run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if not self._calls and self._stopping:
                        return
                    wait = self._calls[0].due - time.monotonic() if self._calls else None
                    if wait is not None and wait <= 0:
                        item = heapq.heappop(self._calls)
                        break
                    self._condition.wait(wait)
            self._run(item)

    def problem(self) -> str | None:
        return self.health.problem(alive=self.is_alive() or self.ident is None or self._stopping)

    def _run(self, item: _Call) -> None:
        if not _attempt(item, self.health):
            with self._condition:
                heapq.heappush(self._calls, item)

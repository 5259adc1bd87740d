"""Delivers results and settles their messages, in batches: results first, then deletes.

A message is deleted (or put back for a retry) only after its result was sent; if the send
keeps failing until the message's visibility lapses, the message is left alone and comes
back. A rejected message goes to the dead-letter queue, when one is configured, before it is
deleted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pool.outbox import InlineOutbox, ThreadOutbox
from queues.base import JobQueue, QueueError, ReceivedMessage, VisibilityChange
from queues.local import LocalQueue

log = logging.getLogger(__name__)
BATCH = 10  # what one SQS batch call takes
REMOTE_BATCH_DELAY_S = 0.5  # how long a result may wait for others to share its call


@dataclass(frozen=True)
class Settlement:
    message: ReceivedMessage
    result_json: str
    reply_to: str | None
    # None: delete the message once the result is out; else hide it this long for a retry.
    retry_in_s: float | None = None
    dead_letter: bool = False  # copy the message to the dead-letter queue before deleting it
    give_up_at: float = float("inf")  # monotonic time after which the message is visible again


class _Delivery:
    """Results for one destination, then their messages settled: retried as a whole, but a
    result that went out is never sent again."""

    def __init__(self, courier: ResultCourier, queue: JobQueue | None, settlements: list[Settlement]) -> None:
        self.courier = courier
        self.queue = queue
        self.settlements = settlements
        self.sent = queue is None  # no result queue: the log is the only record
        self._delivered: set[Settlement] = set()  # results that went out in a partly failed batch
        self.dead_lettered = False

    def __call__(self) -> None:
        if not self.sent:
            assert self.queue is not None
            unsent = [s for s in self.settlements if s not in self._delivered]
            try:
                self.queue.send_batch([settlement.result_json for settlement in unsent])
            except QueueError as exc:
                self._delivered.update(unsent[index] for index in exc.done)
                raise
            self.sent = True
        dead = [s.message.body for s in self.settlements if s.dead_letter]
        if dead and self.courier.dead_letter_queue is not None and not self.dead_lettered:
            self.courier.dead_letter_queue.send_batch(dead)
            self.dead_lettered = True
        self.courier.job_queue.delete([s.message.receipt for s in self.settlements if s.retry_in_s is None])
        self.courier.job_queue.change_visibility(
            [VisibilityChange(s.message.receipt, s.retry_in_s) for s in self.settlements if s.retry_in_s is not None]
        )


class ResultCourier:
    def __init__(
        self,
        job_queue: JobQueue,
        result_queue: JobQueue | None,
        outbox: InlineOutbox | ThreadOutbox,
        dead_letter_queue: JobQueue | None = None,
    ) -> None:
        self.job_queue = job_queue
        self.result_queue = result_queue
        self.outbox = outbox
        self.dead_letter_queue = dead_letter_queue
        self._reply_queues: dict[str, JobQueue] = {}
        self._pending: list[Settlement] = []
        self._oldest = 0.0
        self._batches_over_time = isinstance(outbox, ThreadOutbox)

    def add(self, settlement: Settlement) -> None:
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(settlement)

    def pending_count(self) -> int:
        """Results waiting for their batch to go out."""
        return len(self._pending)

    def seconds_to_flush(self) -> float | None:
        """When the pending results must go out (None: nothing pending)."""
        if not self._pending:
            return None
        if self._batches_over_time:
            return max(0.0, self._oldest + REMOTE_BATCH_DELAY_S - time.monotonic())
        return 0.0

    def flush(self, *, force: bool = False) -> None:
        """Send what is pending; for a remote queue, only once a batch is full or has waited
        REMOTE_BATCH_DELAY_S, so that a busy worker makes one call per ten results."""
        due = self.seconds_to_flush()
        if due is None or (due > 0 and len(self._pending) < BATCH and not force):
            return
        pending, self._pending = self._pending, []
        if self._settle_locally(pending):
            return
        groups: dict[int, tuple[JobQueue | None, list[Settlement]]] = {}
        for settlement in pending:
            queue = self._destination(settlement.reply_to)
            groups.setdefault(id(queue), (queue, []))[1].append(settlement)
        for queue, group in groups.values():
            name = f"deliver {len(group)} results to {queue.spec if queue else 'the log'}"
            self.outbox.submit(name, _Delivery(self, queue, group), min(s.give_up_at for s in group))

    def _settle_locally(self, pending: list[Settlement]) -> bool:
        """On the embedded queue, with every result bound for the same file: one transaction."""
        if not isinstance(self.job_queue, LocalQueue) or self.dead_letter_queue is not None:
            return False
        destinations = [(settlement, self._destination(settlement.reply_to)) for settlement in pending]
        if not all(isinstance(q, LocalQueue) and q.path == self.job_queue.path for _, q in destinations):
            return False
        job_queue = self.job_queue
        self.outbox.submit(
            "settle finished jobs",
            lambda: job_queue.settle(
                [(q, s.result_json) for s, q in destinations if isinstance(q, LocalQueue)],
                [s.message.receipt for s in pending if s.retry_in_s is None],
                [VisibilityChange(s.message.receipt, s.retry_in_s) for s in pending if s.retry_in_s is not None],
            ),
            min(s.give_up_at for s in pending),
        )
        return True

    def _destination(self, reply_to: str | None) -> JobQueue | None:
        if reply_to is None:
            return self.result_queue
        if reply_to not in self._reply_queues:
            try:
                self._reply_queues[reply_to] = self.job_queue.sibling(reply_to)
            except (ValueError, QueueError) as exc:
                log.warning(
                    "unusable reply_to; result sent to the result queue",
                    extra={"reply_to": reply_to, "error": str(exc)},
                )
                return self.result_queue
        return self._reply_queues[reply_to]

"""Delivers results and settles their messages, in batches: results first, then deletes.

A message is deleted (or put back for a retry) only after its result was sent; if the send
fails, the message is left alone and comes back when its visibility lapses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from queues.base import JobQueue, QueueError, ReceivedMessage, VisibilityChange
from queues.local import LocalQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settlement:
    message: ReceivedMessage
    result_json: str
    reply_to: str | None
    # None: delete the message once the result is out; else hide it this long for a retry.
    retry_in_s: float | None = None


class ResultCourier:
    def __init__(self, job_queue: JobQueue, result_queue: JobQueue | None) -> None:
        self.job_queue = job_queue
        self.result_queue = result_queue
        self._reply_queues: dict[str, JobQueue] = {}
        self._pending: list[Settlement] = []

    def add(self, settlement: Settlement) -> None:
        self._pending.append(settlement)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        if self._settle_locally(pending):
            return
        delivered = []
        for queue, group in self._by_destination(pending):
            if queue is None:
                delivered += group  # no result queue: the log is the only record
                continue
            try:
                queue.send_batch([settlement.result_json for settlement in group])
                delivered += group
            except QueueError as exc:
                log.error("could not send results", extra={"queue": queue.spec, "count": len(group), "error": str(exc)})
        self._settle(delivered)

    def _settle_locally(self, pending: list[Settlement]) -> bool:
        """On the embedded queue, with every result bound for the same file: one transaction."""
        if not isinstance(self.job_queue, LocalQueue):
            return False
        destinations = [(settlement, self._destination(settlement.reply_to)) for settlement in pending]
        if not all(isinstance(q, LocalQueue) and q.path == self.job_queue.path for _, q in destinations):
            return False
        try:
            self.job_queue.settle(
                [(q, s.result_json) for s, q in destinations if isinstance(q, LocalQueue)],
                [s.message.receipt for s in pending if s.retry_in_s is None],
                [VisibilityChange(s.message.receipt, s.retry_in_s) for s in pending if s.retry_in_s is not None],
            )
        except QueueError as exc:
            log.error("could not settle finished messages", extra={"count": len(pending), "error": str(exc)})
        return True

    def _settle(self, delivered: list[Settlement]) -> None:
        deletes = [s.message.receipt for s in delivered if s.retry_in_s is None]
        retries = [VisibilityChange(s.message.receipt, s.retry_in_s) for s in delivered if s.retry_in_s is not None]
        try:
            self.job_queue.delete(deletes)
            self.job_queue.change_visibility(retries)
        except QueueError as exc:
            log.error("could not settle finished messages", extra={"count": len(delivered), "error": str(exc)})

    def _by_destination(self, pending: list[Settlement]) -> list[tuple[JobQueue | None, list[Settlement]]]:
        groups: dict[int, tuple[JobQueue | None, list[Settlement]]] = {}
        for settlement in pending:
            queue = self._destination(settlement.reply_to)
            groups.setdefault(id(queue), (queue, []))[1].append(settlement)
        return list(groups.values())

    def _destination(self, reply_to: str | None) -> JobQueue | None:
        if reply_to is None:
            return self.result_queue
        if reply_to not in self._reply_queues:
            try:
                self._reply_queues[reply_to] = self.job_queue.sibling(reply_to)
            except ValueError as exc:
                log.warning(
                    "unusable reply_to; result sent to the result queue",
                    extra={"reply_to": reply_to, "error": str(exc)},
                )
                return self.result_queue
        return self._reply_queues[reply_to]

"""The queue interface the supervisor relies on: SQS semantics, whatever the backend."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

BATCH_MAX = 10  # the most entries one batch call (receive, send, delete, change visibility) takes: SQS's limit
LONG_POLL_S = 20  # the longest one receive may wait for a message: SQS's limit
POLL_INTERVAL_S = 0.02  # how often a queue that cannot long-poll (the embedded one) is looked at while empty
MAX_GROUP_ID_CHARS = 128  # SQS's limit for MessageGroupId and MessageDeduplicationId
# What SQS allows in a MessageGroupId: letters, digits and ASCII punctuation.
_GROUP_ID = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]+")


def check_group_id(group_id: str) -> None:
    """ValueError naming the problem unless `group_id` is a message group SQS would take."""
    if not group_id:
        raise ValueError("a message group must not be empty")
    if len(group_id) > MAX_GROUP_ID_CHARS:
        raise ValueError(f"a message group is at most {MAX_GROUP_ID_CHARS} characters, not {len(group_id)}")
    if not _GROUP_ID.fullmatch(group_id):
        raise ValueError(
            f"message group {group_id[:40]!r} may hold only letters, digits and ASCII punctuation (as in SQS)"
        )


@dataclass(frozen=True)
class BodyDefect:
    """Why a received message has no usable body (an S3 pointer that cannot be resolved).

    `retryable`: a fault on the storage side, worth another attempt; else the message is
    rejected, never run.
    """

    problem: str
    retryable: bool = False


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    receipt: str
    body: str
    receive_count: int
    defect: BodyDefect | None = None  # set: `body` is the raw message as received, not a request
    group_id: str | None = None  # its message group: one job of a group runs at a time, in order
    sent_at: float | None = None  # when it was first sent (epoch seconds), where the queue says


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to send. The ids matter where the queue has groups: a FIFO queue delivers one
    group's messages in order, and SQS drops a message whose deduplication id it saw in the
    last five minutes."""

    body: str
    group_id: str | None = None
    deduplication_id: str | None = None
    delay_s: float = 0.0  # hidden this long after it is sent, where the queue delays messages


Sendable = str | OutgoingMessage


def outgoing(message: Sendable) -> OutgoingMessage:
    return message if isinstance(message, OutgoingMessage) else OutgoingMessage(message)


@dataclass(frozen=True)
class QueueDepth:
    """How many messages a queue holds (SQS: approximately): `visible`, waiting to be received
    now; `in_flight`, received by some worker and not yet deleted (running, held, or hidden
    for a retry's delay)."""

    visible: int
    in_flight: int


@dataclass(frozen=True)
class VisibilityChange:
    receipt: str
    timeout_s: float


class QueueError(Exception):
    """The queue backend could not do what was asked (a system fault, retryable).

    `done`: for a batch call that partly went through, the indexes of the entries that did.
    `operation`: the backend call that failed (e.g. `receive_message`), for metrics.
    """

    def __init__(self, message: str, done: frozenset[int] = frozenset(), operation: str = "unknown") -> None:
        super().__init__(message)
        self.done = done
        self.operation = operation


@dataclass(frozen=True)
class DeliveryProfile:
    """How the pool is to work a backend, known when the backend is built."""

    calls_in_loop: bool  # calls are local transactions, quicker made at once than handed to a thread
    result_batch_delay_s: float  # how long a result may wait for others to share its call
    flush_when_idle: bool  # no batch is worth waiting for while no job runs
    # Holding received messages beyond the idle slots. Not on a FIFO queue: a held message
    # locks its whole group there, for every worker.
    prefetch: bool
    receives_in_flight: int = 1  # at most, while the queue has a backlog
    calls_in_flight: int = 1  # result sends, deletes and visibility changes made at once, at most
    delays_messages: bool = True  # a message sent may be delayed (not on a FIFO queue, where the queue's delay rules)


class Wakeups(Protocol):
    """Readable (its `fileno` in a selector) when a message may have become receivable."""

    def fileno(self) -> int: ...

    def drain(self) -> None: ...

    def close(self) -> None: ...


class JobQueue(Protocol):
    @property
    def spec(self) -> str:
        """The queue's address as given on the command line."""
        ...

    @property
    def profile(self) -> DeliveryProfile:
        """How the pool is to receive from, batch for and settle on this backend."""
        ...

    def job_message(self, body: str, group: str | None, job_id: str | None) -> OutgoingMessage:
        """A job to send, in `group` if given, as this backend needs it (a FIFO queue needs a
        group and a deduplication id); ValueError naming the problem if it cannot take it."""
        ...

    def attempts_limit(self, default: int) -> int:
        """The attempt after which the queue itself gives a message up (e.g. SQS's redrive
        policy), else `default`."""
        ...

    def settle(
        self,
        sends: Sequence[tuple[JobQueue, Sequence[Sendable]]],
        deletes: Sequence[str],
        retries: Sequence[VisibilityChange],
    ) -> bool:
        """Send bodies to queues and delete or hide this queue's messages in one atomic step,
        if this backend can for these queues; return False, having done nothing, if not."""
        ...

    def send(self, message: Sendable) -> str:
        """Enqueue a message; return its message id."""
        ...

    def send_batch(self, messages: Sequence[Sendable]) -> list[str]:
        """Enqueue several messages at once; return their message ids."""
        ...

    def receive(self, max_messages: int, wait_seconds: float, visibility_timeout: float) -> list[ReceivedMessage]:
        """Take up to `max_messages`, hidden for `visibility_timeout` s; wait up to `wait_seconds`."""
        ...

    def listen(self) -> Wakeups | None:
        """Wake-ups for new messages, for a receiver that waits on a selector; None when the
        backend has none (a receive then waits in a long poll)."""
        ...

    def delete(self, receipts: Sequence[str]) -> None: ...

    def backlog(self) -> QueueDepth:
        """How many messages wait to be received now, and how many are in flight; QueueError
        when the queue cannot be asked."""
        ...

    def change_visibility(self, changes: Sequence[VisibilityChange]) -> None: ...

    @property
    def reply_address(self) -> str:
        """What a message's `reply_to` says to name this queue."""
        ...

    def private_reply_queue(self) -> JobQueue:
        """A new queue, of this backend, for one client's results."""
        ...

    def drop(self) -> None:
        """Remove this queue and its messages (for private reply queues)."""
        ...

    def sibling(self, name: str) -> JobQueue:
        """Another queue of the same backend, e.g. the one a message's `reply_to` names.

        Raise ValueError naming the problem when `name` is not acceptable to this backend or
        names no queue; QueueError when the backend cannot be asked.
        """
        ...

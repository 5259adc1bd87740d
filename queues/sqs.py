"""AWS SQS behind the queue interface of queues.base, over boto3.

Region, credentials and endpoint come from the standard AWS environment (`AWS_ENDPOINT_URL`,
`AWS_ENDPOINT_URL_SQS`, profiles, instance roles). Messages too large for SQS travel through
S3 with AWS's extended client (`sqs_extended_client`), which reads both the current
(`ExtendedPayloadSize`) and the legacy (`SQSLargePayloadSize`) pointer attribute.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import msgspec

from protocol.body import DEFAULT_MAX_BODY_BYTES
from queues.base import (
    BATCH_MAX,
    LONG_POLL_S,
    BodyDefect,
    DeliveryProfile,
    JobQueue,
    OutgoingMessage,
    QueueDepth,
    QueueError,
    ReceivedMessage,
    Sendable,
    VisibilityChange,
    check_group_id,
    outgoing,
)
from queues.call_timing import call_took
from queues.payload_pointer import POINTER, POINTER_SIZE_ATTRIBUTES, PointerTarget

MAX_VISIBILITY_S = 43200
REMOTE_BATCH_DELAY_S = 0.5  # how long a result may wait for others to share its send call
# Round trips overlapped, so that an endpoint tens of milliseconds away keeps a busy pool fed.
RECEIVES_IN_FLIGHT = 3
CALLS_IN_FLIGHT = 4
T = TypeVar("T")
_VISIBLE, _IN_FLIGHT = "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"

_RETRIES = {"mode": "standard", "max_attempts": 5}
_clients: dict[str | None, Any] = {}
_clients_lock = threading.Lock()
_receive_client: Any = None


def _sqs_client(large_payload_bucket: str | None) -> Any:
    """One client per payload bucket and process (boto3 clients are thread-safe)."""
    with _clients_lock:
        if large_payload_bucket not in _clients:
            import boto3  # noqa: PLC0415 (imported on first use, as in staging.s3_store)
            import sqs_extended_client  # noqa: F401, PLC0415 (adds large-payload support to boto3's SQS client)
            from botocore.config import Config  # noqa: PLC0415

            client = boto3.session.Session().client("sqs", config=Config(retries=_RETRIES))
            # A request's S3 payload goes with its message, whether or not we send large ones.
            client.delete_payload_from_s3 = True
            if large_payload_bucket:
                client.large_payload_support = large_payload_bucket
            _clients[large_payload_bucket] = client
        return _clients[large_payload_bucket]


def _plain_sqs_client() -> Any:
    """A client without the extended client's receive hook, which resolves every pointer of a
    batch itself and fails the whole batch on one bad or huge payload: receiving goes through
    this one, and each pointer is resolved apart, within the body size limit."""
    global _receive_client  # noqa: PLW0603 (one per process, like the others)
    with _clients_lock:
        if _receive_client is None:
            import botocore.session  # noqa: PLC0415
            from botocore.config import Config  # noqa: PLC0415

            _receive_client = botocore.session.get_session().create_client("sqs", config=Config(retries=_RETRIES))
        return _receive_client


_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")


def is_sqs_url(spec: str) -> bool:
    return spec.startswith(("https://", "http://"))


def check_sqs_queue_name(name: str) -> None:
    if not _QUEUE_NAME.match(name):
        raise ValueError(f"{name!r} is neither a queue URL nor an SQS queue name (1-80 of A-Z a-z 0-9 _ -)")


class SqsQueue:
    def __init__(
        self, url: str, large_payload_bucket: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ) -> None:
        self.url = url
        self.large_payload_bucket = large_payload_bucket
        self.max_body_bytes = max_body_bytes  # a pointer to a larger payload is not downloaded
        # SQS requires a FIFO queue's name to end in `.fifo`, so its URL says what it is.
        self._fifo = url.rstrip("/").endswith(".fifo")
        self._profile = DeliveryProfile(
            calls_in_loop=False,
            result_batch_delay_s=REMOTE_BATCH_DELAY_S,
            flush_when_idle=False,
            prefetch=not self._fifo,
            # A FIFO receive that fails is retried with its attempt id: one at a time.
            receives_in_flight=1 if self._fifo else RECEIVES_IN_FLIGHT,
            calls_in_flight=CALLS_IN_FLIGHT,
            delays_messages=not self._fifo,
        )
        # A FIFO receive that failed on the way back is retried with its attempt id: SQS returns its messages.
        self._unanswered_receive: str | None = None

    @property
    def spec(self) -> str:
        return self.url

    def _client(self) -> Any:
        return _sqs_client(self.large_payload_bucket)

    def _call(self, name: str, action: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        started = time.perf_counter()
        try:
            return action()
        except (BotoCoreError, ClientError) as exc:
            raise QueueError(f"{name} on {self.url} failed: {exc}", operation=name) from exc
        except Exception as exc:  # the extended client raises its own kinds
            raise QueueError(f"{name} on {self.url} failed: {type(exc).__name__}: {exc}", operation=name) from exc
        finally:
            call_took(name, time.perf_counter() - started)

    @property
    def reply_address(self) -> str:
        return self.url

    @property
    def profile(self) -> DeliveryProfile:
        return self._profile

    def job_message(self, body: str, group: str | None, job_id: str | None) -> OutgoingMessage:
        """On a FIFO queue: the group given or else the job's id, deduplicated by the job's id
        (SQS drops a resend of one id within 5 minutes)."""
        if not self._fifo:
            if group is not None:
                raise ValueError("--group needs a FIFO queue (its name ends in .fifo) or the embedded queue")
            return OutgoingMessage(body)
        if group is not None:
            check_group_id(group)
        elif job_id is not None:
            try:
                check_group_id(job_id)
            except ValueError as exc:
                raise ValueError(f"the job's id cannot be its message group ({exc}): give --group") from None
            group = job_id
        # Imported here: hashlib brings OpenSSL (4 MB) into every pool child, which imports this
        # module; only a client sending a job needs it.
        import hashlib  # noqa: PLC0415

        deduplication_id = hashlib.sha256(job_id.encode()).hexdigest() if job_id is not None else uuid.uuid4().hex
        return OutgoingMessage(body, group or uuid.uuid4().hex, deduplication_id)

    def attempts_limit(self, default: int) -> int:
        """The redrive policy's maxReceiveCount: SQS moves the message on after that attempt,
        so that attempt is the last one."""
        return self.max_receive_count() or default

    def settle(
        self,
        sends: Sequence[tuple[JobQueue, Sequence[Sendable]]],
        deletes: Sequence[str],
        retries: Sequence[VisibilityChange],
    ) -> bool:
        return False  # SQS has no transaction across calls: the courier goes step by step

    def private_reply_queue(self) -> SqsQueue:
        name = f"api-worker-reply-{uuid.uuid4().hex}"
        url = self._call("create_queue", lambda: self._client().create_queue(QueueName=name)["QueueUrl"])
        return SqsQueue(str(url), self.large_payload_bucket)

    def listen(self) -> None:
        return None  # a receive long-polls instead

    def drop(self) -> None:
        self._call("delete_queue", lambda: self._client().delete_queue(QueueUrl=self.url))

    def sibling(self, name: str) -> SqsQueue:
        """A reply queue: a full queue URL, or a queue name looked up in this queue's account."""
        if is_sqs_url(name):
            return SqsQueue(name, self.large_payload_bucket)
        check_sqs_queue_name(name)
        try:
            url = self._call("get_queue_url", lambda: self._client().get_queue_url(QueueName=name)["QueueUrl"])
        except QueueError as exc:
            if _names_no_queue(exc):
                raise ValueError(f"there is no SQS queue named {name!r}") from None
            raise
        return SqsQueue(str(url), self.large_payload_bucket)

    def send(self, message: Sendable) -> str:
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[Sendable]) -> list[str]:
        message_ids: list[str] = []
        for start in range(0, len(messages), BATCH_MAX):
            entries = [
                self._entry(str(start + i), outgoing(message))
                for i, message in enumerate(messages[start : start + BATCH_MAX])
            ]
            earlier = frozenset(range(start))
            try:
                response = self._call(
                    "send_message_batch",
                    partial(self._client().send_message_batch, QueueUrl=self.url, Entries=entries),
                )
            except QueueError as exc:
                raise QueueError(str(exc), earlier, exc.operation) from exc
            try:
                _raise_failed("send_message_batch", self.url, response)
            except QueueError as exc:
                # Say which entries went out, so that a retry sends only the others.
                sent = frozenset(int(entry["Id"]) for entry in response.get("Successful", []))
                raise QueueError(str(exc), earlier | sent, exc.operation) from exc
            by_id = {entry["Id"]: entry["MessageId"] for entry in response.get("Successful", [])}
            message_ids += [by_id[entry["Id"]] for entry in entries]
        return message_ids

    def _entry(self, entry_id: str, message: OutgoingMessage) -> dict[str, Any]:
        entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
        if self._fifo:
            # Both are required here; a message without a group is a group of its own.
            deduplication_id = message.deduplication_id or uuid.uuid4().hex
            entry["MessageGroupId"] = message.group_id or deduplication_id
            entry["MessageDeduplicationId"] = deduplication_id
        elif message.delay_s > 0:
            entry["DelaySeconds"] = min(900, round(message.delay_s))  # SQS's limit
        return entry

    def receive(self, max_messages: int, wait_seconds: float, visibility_timeout: float) -> list[ReceivedMessage]:
        if max_messages <= 0:
            return []
        arguments: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": min(BATCH_MAX, max_messages),
            "WaitTimeSeconds": min(LONG_POLL_S, int(wait_seconds)),
            "VisibilityTimeout": _seconds(visibility_timeout),
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "MessageGroupId", "SentTimestamp"],
            "MessageAttributeNames": ["All"],
        }
        if self._fifo:
            attempt = self._unanswered_receive or uuid.uuid4().hex
            arguments["ReceiveRequestAttemptId"] = attempt
            self._unanswered_receive = attempt  # until an answer came back
        response = self._call("receive_message", lambda: _plain_sqs_client().receive_message(**arguments))
        self._unanswered_receive = None
        return [self._received(message) for message in response.get("Messages", [])]

    def _received(self, message: dict[str, Any]) -> ReceivedMessage:
        message_id, receipt, body = message["MessageId"], message["ReceiptHandle"], message["Body"]
        attributes = message.get("Attributes", {})
        receive_count = int(attributes.get("ApproximateReceiveCount", 1))
        group_id = attributes.get("MessageGroupId")
        sent_at = _epoch_seconds(attributes.get("SentTimestamp"))
        message_attributes = message.get("MessageAttributes", {})
        declared = next((message_attributes[n] for n in POINTER_SIZE_ATTRIBUTES if n in message_attributes), None)
        if declared is None:
            return ReceivedMessage(message_id, receipt, body, receive_count, group_id=group_id, sent_at=sent_at)
        try:
            target = POINTER.decode(body)[1]
        except (msgspec.DecodeError, RecursionError) as exc:
            problem = BodyDefect(f"marked as a large payload, but not an S3 pointer ({exc})")
            return ReceivedMessage(message_id, receipt, body, receive_count, problem, group_id, sent_at)
        # Carry the pointer in the receipt, as the extended client does: the payload goes with the message.
        receipt = self._client().embed_s3_pointer_in_receipt_handle({"ReceiptHandle": receipt, "Body": body})
        payload, defect = self._fetch_payload(target, declared.get("StringValue", ""))
        return ReceivedMessage(
            message_id, receipt, payload if defect is None else body, receive_count, defect, group_id, sent_at
        )

    def _fetch_payload(self, target: PointerTarget, declared_size: str) -> tuple[str, BodyDefect | None]:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        where = f"s3://{target.s3BucketName}/{target.s3Key}"
        limit = self.max_body_bytes
        if not declared_size.isdigit() or int(declared_size) > limit:
            return "", BodyDefect(f"the payload at {where} is {declared_size} bytes; at most {limit} are accepted")
        try:
            response = self._client().s3_client.get_object(Bucket=target.s3BucketName, Key=target.s3Key)
            data = response["Body"].read(limit + 1)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            gone = code in ("NoSuchKey", "NoSuchBucket", "InvalidBucketName", "404")
            return "", BodyDefect(f"cannot fetch the payload at {where}: {exc}", retryable=not gone)
        except (BotoCoreError, ValueError) as exc:
            return "", BodyDefect(f"cannot fetch the payload at {where}: {exc}", retryable=True)
        if len(data) > limit:
            return "", BodyDefect(f"the payload at {where} is over {limit} bytes, more than its pointer said")
        try:
            return data.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            return "", BodyDefect(f"the payload at {where} is not UTF-8 text ({exc})")

    def _original_receipt(self, receipt: str) -> str:
        """The SQS receipt inside one the extended client rewrote to carry an S3 pointer.

        Done here, not left to the extended client: its batch calls unwrap only when the client
        itself sends large payloads, and a worker reads pointers with or without a bucket.
        """
        client = self._client()
        return str(client.get_original_receipt_handle(receipt)) if client.is_s3_receipt_handle(receipt) else receipt

    def delete(self, receipts: Sequence[str]) -> None:
        client = self._client()
        for chunk in _chunks(list(receipts)):
            entries = [
                {"Id": str(index), "ReceiptHandle": self._original_receipt(receipt)}
                for index, receipt in enumerate(chunk)
            ]
            response = self._call(
                "delete_message_batch", partial(client.delete_message_batch, QueueUrl=self.url, Entries=entries)
            )
            _raise_failed("delete_message_batch", self.url, response)
            # The request's payload goes once its message is gone, never before.
            for receipt in chunk:
                if client.is_s3_receipt_handle(receipt):
                    self._call("delete payload from S3", partial(client.delete_message_from_s3, receipt))

    def change_visibility(self, changes: Sequence[VisibilityChange]) -> None:
        for chunk in _chunks(list(changes)):
            entries = [
                {
                    "Id": str(index),
                    "ReceiptHandle": self._original_receipt(change.receipt),
                    "VisibilityTimeout": _seconds(change.timeout_s),
                }
                for index, change in enumerate(chunk)
            ]
            response = self._call(
                "change_message_visibility_batch",
                partial(self._client().change_message_visibility_batch, QueueUrl=self.url, Entries=entries),
            )
            _raise_failed("change_message_visibility_batch", self.url, response)

    def _attributes(self, *names: str) -> dict[str, str]:
        call = partial(self._client().get_queue_attributes, QueueUrl=self.url, AttributeNames=list(names))
        found = self._call("get_queue_attributes", call).get("Attributes", {})
        return {name: str(value) for name, value in found.items()}

    def backlog(self) -> QueueDepth:
        found = self._attributes(_VISIBLE, _IN_FLIGHT)
        return QueueDepth(int(found.get(_VISIBLE) or 0), int(found.get(_IN_FLIGHT) or 0))

    def max_receive_count(self) -> int | None:
        """The redrive policy's maxReceiveCount: the attempt after which SQS gives up."""
        policy = self._attributes("RedrivePolicy").get("RedrivePolicy")
        return int(json.loads(policy)["maxReceiveCount"]) if policy else None


def _names_no_queue(exc: QueueError) -> bool:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    cause = exc.__cause__
    code = cause.response.get("Error", {}).get("Code", "") if isinstance(cause, ClientError) else ""
    return code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


def _seconds(value: float) -> int:
    return max(0, min(MAX_VISIBILITY_S, round(value)))


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), BATCH_MAX):
        yield items[start : start + BATCH_MAX]


def _raise_failed(call: str, url: str, response: dict[str, Any]) -> None:
    failed = response.get("Failed", [])
    if failed:
        reasons = "; ".join(f"{entry.get('Code')}: {entry.get('Message')}" for entry in failed)
        raise QueueError(f"{call} on {url}: {len(failed)} entries failed ({reasons})", operation=call)


def _epoch_seconds(milliseconds: str | None) -> float | None:
    """SQS's SentTimestamp (epoch milliseconds, as text) in seconds; None when absent or unreadable."""
    return int(milliseconds) / 1000 if milliseconds is not None and milliseconds.isdigit() else None

"""The shared job table (DynamoDB): one item per job id, written only by conditional writes.

A worker claims a job before running it: owner, a lease (renewed while the job runs) and a
fence, one more than the last claim's. Only the holder of the current fence may renew the
lease, store the job's outcome or give the claim back; a worker whose fence is no longer
current publishes nothing. Cancel requests are attributes of the same item, so a claim sees
them in the same write.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from protocol.cancel import CANCEL_EXPIRY_S, CancelRequest, CancelUnavailable

log = logging.getLogger(__name__)

KEY = "job_id"
RUNNING, FINISHED = "running", "finished"
BATCH_GET_MAX = 100  # DynamoDB's limit of keys per BatchGetItem
MAX_INLINE_RESULT_BYTES = 300_000  # an item holds 400 KB; a larger result goes to S3, the item points to it
RESULTS_PREFIX = "api-worker/job-results/"  # where large results are kept in the result bucket
_NAMES = {"#state": "state", "#owner": "owner"}
_CANCEL_ATTRIBUTES = "cancel_reason, cancel_by, cancel_at"


class TableUnreachable(CancelUnavailable):
    """The table could not be asked (network, throttling, credentials): a system fault."""


class ConditionFailed(Exception):
    def __init__(self, item: dict[str, Any]) -> None:
        super().__init__("condition failed")
        self.item = item  # the item as it was, where the call asked for it


@dataclass(frozen=True)
class Claim:
    job_id: str
    fence: int
    cancel: CancelRequest | None = None  # canceled before it started: to be settled as such at once


@dataclass(frozen=True)
class StoredResult:
    """A finished job's final result as the table keeps it, to be sent again as it was."""

    message_id: str
    attempt: int
    result_json: str


@dataclass(frozen=True)
class Refusal:
    """Why a claim was not granted: the job finished, or another worker holds it."""

    finished_status: str | None = None
    finished_as: str | None = None  # the message it finished under
    owner: str | None = None
    lease_left_s: float = 0.0
    result: StoredResult | None = None  # a finished job's, when the table could give it back


class _ResultHead(msgspec.Struct):
    message_id: str
    attempt: int


class JobTable:
    """Picklable (each process makes its own client, on first use); safe to share between threads.
    A claim is refused only while the job is finished or another worker's lease runs; a job
    canceled before it started is claimed all the same, so that its canceled outcome is stored
    under a fence like any other."""

    def __init__(self, name: str, result_bucket: str | None = None) -> None:
        """`result_bucket`: where a result too large for an item is kept (none: its size only)."""
        self.name = name
        self.result_bucket = result_bucket
        self._client: Any = None
        self._s3: Any = None

    def __reduce__(self) -> tuple[type[JobTable], tuple[str, str | None]]:
        return (JobTable, (self.name, self.result_bucket))

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _boto_client("dynamodb", read_timeout_s=10)
        return self._client

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = _boto_client("s3", read_timeout_s=30)
        return self._s3

    def call(self, operation: str, **parameters: Any) -> dict[str, Any]:
        """One call on this table."""
        return self._invoke(operation, TableName=self.name, **parameters)

    def _invoke(self, operation: str, **parameters: Any) -> dict[str, Any]:
        """One call; TableUnreachable for anything but a failed condition."""
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            response: dict[str, Any] = getattr(self.client, operation)(**parameters)
            return response
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise ConditionFailed(exc.response.get("Item") or {}) from None
            raise TableUnreachable(f"job table {self.name}: {operation} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise TableUnreachable(f"job table {self.name}: {operation} failed: {exc}") from exc

    def check(self) -> None:
        """ValueError naming what is wrong unless the table exists with the documented key."""
        try:
            table = self.call("describe_table")["Table"]
        except TableUnreachable as exc:
            raise ValueError(f"--job-table: {exc}") from None
        keys = [(k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])]
        types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
        if keys != [(KEY, "HASH")] or types.get(KEY) != "S":
            raise ValueError(
                f"--job-table {self.name} has the key {keys} ({types}); it must be a partition key '{KEY}' "
                "of type S and no sort key (see docs/guarantees.md)"
            )

    def claim(self, job_id: str, message_id: str, owner: str, lease_s: float) -> Claim | Refusal:
        now = time.time()
        try:
            item = self.call(
                "update_item",
                Key=_key(job_id),
                UpdateExpression="SET #state = :running, #owner = :owner, lease_until = :lease, message_id = :message,"
                " fence = if_not_exists(fence, :zero) + :one REMOVE expires_at",  # a running job never expires
                ConditionExpression="attribute_not_exists(#state) OR (#state = :running AND lease_until < :now)",
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={
                    ":running": {"S": RUNNING},
                    ":owner": {"S": owner},
                    ":message": {"S": message_id},
                    ":lease": _number(now + lease_s),
                    ":now": _number(now),
                    ":zero": _number(0),
                    ":one": _number(1),
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )["Attributes"]
        except ConditionFailed as refused:
            return self._refusal(refused.item or self._get(job_id), now)
        return Claim(job_id, int(item["fence"]["N"]), _cancel_of(item))

    def renew(self, claim: Claim, lease_s: float) -> bool:
        """Extend the lease; False if the claim is no longer this worker's."""
        return self._fenced(claim, "SET lease_until = :lease", {":lease": _number(time.time() + lease_s)})

    def give_back(self, claim: Claim) -> bool:
        """End the lease now (the job is to be retried): the next claim, anywhere, takes it at once."""
        return self._fenced(claim, "SET lease_until = :lease", {":lease": _number(0)})

    def finish(self, claim: Claim, status: str, result_json: str, retention_s: float) -> bool:
        """Store the final outcome; False (nothing written) if the claim is no longer this worker's."""
        now = time.time()
        size = len(result_json.encode())
        values = {
            ":finished": {"S": FINISHED},
            ":status": {"S": status},
            ":at": _number(now),
            ":expires": _number(int(now + retention_s)),
            ":bytes": _number(size),
        }
        update = "SET #state = :finished, #status = :status, finished_at = :at, expires_at = :expires,"
        update += " result_bytes = :bytes"
        names = {"#status": "status"}
        if size <= MAX_INLINE_RESULT_BYTES:
            update += ", #result = :result"
            values[":result"] = {"S": result_json}
            names["#result"] = "result"
        elif self.result_bucket is not None:
            key = self._put_result(claim, result_json)
            update += ", result_bucket = :bucket, result_key = :key"
            values.update({":bucket": {"S": self.result_bucket}, ":key": {"S": key}})
        update += f" REMOVE lease_until, {_CANCEL_ATTRIBUTES}"  # a cancel request ends with its job
        return self._fenced(claim, update, values, names)

    def _put_result(self, claim: Claim, result_json: str) -> str:
        """A result too large for an item, into the result bucket; its key."""
        import hashlib  # noqa: PLC0415 (OpenSSL only where a large result is stored)

        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        digest = hashlib.sha256(claim.job_id.encode("utf-8", "surrogateescape")).hexdigest()
        key = f"{RESULTS_PREFIX}{digest}/{claim.fence}.json"
        try:
            self.s3.put_object(
                Bucket=self.result_bucket, Key=key, Body=result_json.encode(), ContentType="application/json"
            )
        except (BotoCoreError, ClientError) as exc:
            raise TableUnreachable(
                f"job table {self.name}: storing the result in s3://{self.result_bucket}/{key} failed: {exc}"
            ) from exc
        return key

    def _refusal(self, item: dict[str, Any], now: float) -> Refusal:
        plain = {name: _plain(value) for name, value in item.items()}
        if plain.get("state") == FINISHED:
            return Refusal(
                finished_status=str(plain.get("status")),
                finished_as=str(plain.get("message_id")),
                result=self._stored_result(plain),
            )
        lease_until = plain.get("lease_until")
        left = lease_until - now if isinstance(lease_until, float) else 0.0
        return Refusal(owner=str(plain.get("owner")), lease_left_s=max(0.0, left))

    def _stored_result(self, item: dict[str, object]) -> StoredResult | None:
        """The finished job's result, from the item or the result bucket; None when it is
        not kept (too large, and no bucket) or cannot be read."""
        text = item.get("result")
        if not isinstance(text, str) and isinstance(item.get("result_key"), str):
            location = f"s3://{item.get('result_bucket')}/{item['result_key']}"
            try:
                body = self.s3.get_object(Bucket=item.get("result_bucket"), Key=item["result_key"])["Body"]
                text = body.read().decode()
            except Exception as exc:  # whatever S3 says, the job stays finished
                log.error("cannot read a finished job's stored result", extra={"at": location, "error": str(exc)})
                return None
        if not isinstance(text, str):
            return None
        try:
            head = msgspec.json.decode(text, type=_ResultHead)
        except msgspec.DecodeError as exc:
            log.error(
                "a finished job's stored result is unreadable", extra={"job_id": item.get(KEY), "error": str(exc)}
            )
            return None
        return StoredResult(head.message_id, head.attempt, text)

    def _fenced(self, claim: Claim, update: str, values: dict[str, Any], names: dict[str, str] | None = None) -> bool:
        try:
            self.call(
                "update_item",
                Key=_key(claim.job_id),
                UpdateExpression=update,
                ConditionExpression="fence = :fence AND #state = :running",
                ExpressionAttributeNames={"#state": "state", **(names or {})},
                ExpressionAttributeValues={**values, ":fence": _number(claim.fence), ":running": {"S": RUNNING}},
            )
        except ConditionFailed:
            return False
        return True

    def request(self, cancel: CancelRequest) -> None:
        """Mark the job canceled (a job not seen yet is canceled when it comes). The request
        ends with the job's final result; an item that is only a request expires after
        CANCEL_EXPIRY_S (a claim takes the expiry off, the job's outcome puts its own)."""
        self.call(
            "update_item",
            Key=_key(cancel.job_id),
            UpdateExpression="SET cancel_reason = :reason, cancel_by = :by, cancel_at = :at,"
            " expires_at = if_not_exists(expires_at, :expires)",
            ExpressionAttributeValues={
                ":reason": {"S": cancel.reason},
                ":by": {"S": cancel.requested_by},
                ":at": _number(cancel.requested_at),
                ":expires": _number(int(time.time() + CANCEL_EXPIRY_S)),
            },
        )

    def forget(self, job_id: str, requested_before: float) -> None:
        """The job's cancel request dropped, if made before then (for a job that ended without
        a claim: its outcome, stored under a claim, drops it in the same write)."""
        with contextlib.suppress(ConditionFailed):  # none, or a newer one: it stays
            self.call(
                "update_item",
                Key=_key(job_id),
                UpdateExpression=f"REMOVE {_CANCEL_ATTRIBUTES}",
                ConditionExpression="cancel_at <= :before",
                ExpressionAttributeValues={":before": _number(requested_before)},
            )

    def requested(self, job_ids: Sequence[str]) -> dict[str, CancelRequest]:
        found: dict[str, CancelRequest] = {}
        ids = list(dict.fromkeys(job_ids))
        for start in range(0, len(ids), BATCH_GET_MAX):
            for item in self._get_many(ids[start : start + BATCH_GET_MAX]):
                cancel = _cancel_of(item)
                if cancel is not None:
                    found[cancel.job_id] = cancel
        return found

    def _get_many(self, job_ids: list[str]) -> list[dict[str, Any]]:
        wanted: dict[str, Any] = {
            self.name: {
                "Keys": [_key(job_id) for job_id in job_ids],
                "ProjectionExpression": "job_id, cancel_reason, cancel_by, cancel_at",
            }
        }
        items: list[dict[str, Any]] = []
        for _ in range(5):  # what DynamoDB leaves unprocessed (throttled) is asked again
            response = self._invoke("batch_get_item", RequestItems=wanted)
            items += response.get("Responses", {}).get(self.name, [])
            wanted = response.get("UnprocessedKeys") or {}
            if not wanted:
                break
        return items

    def _get(self, job_id: str) -> dict[str, Any]:
        item: dict[str, Any] = self.call("get_item", Key=_key(job_id), ConsistentRead=True).get("Item", {})
        return item

    def state(self, job_id: str) -> dict[str, Any]:
        """The job's item as plain values ({} if the table has none)."""
        return {name: _plain(value) for name, value in self._get(job_id).items()}


def _cancel_of(item: dict[str, Any]) -> CancelRequest | None:
    if "cancel_at" not in item:
        return None
    return CancelRequest(
        item[KEY]["S"],
        item.get("cancel_reason", {}).get("S", ""),
        item.get("cancel_by", {}).get("S", ""),
        float(item["cancel_at"]["N"]),
    )


def _boto_client(service: str, *, read_timeout_s: float) -> Any:
    import boto3  # noqa: PLC0415 (only workers with a table pay for it)
    from botocore.config import Config  # noqa: PLC0415

    config = Config(connect_timeout=3, read_timeout=read_timeout_s, retries={"mode": "standard", "max_attempts": 3})
    return boto3.client(service, config=config)


def _key(job_id: str) -> dict[str, Any]:
    return {KEY: {"S": job_id}}


def _number(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _plain(value: dict[str, Any]) -> object:
    ((kind, data),) = value.items()
    if kind == "N":
        return float(data)
    return data

"""The result message (docs/messages.md, "The result message"): its fields and statuses."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import msgspec

from protocol.version import VERSION


class Status(StrEnum):
    ALIVE = "alive"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    KILLED = "killed"
    REJECTED = "rejected"
    CANCELED = "canceled"
    ERROR = "error"


# The statuses of a job that did not do its work (canceled is asked for; alive is no job).
FAILURES = frozenset({Status.FAILED, Status.TIMEOUT, Status.KILLED, Status.REJECTED, Status.ERROR})


class ErrorInfo(msgspec.Struct, frozen=True):
    type: str
    message: str


class UploadedObject(msgspec.Struct, frozen=True):
    uri: str
    bytes: int


class SkippedPath(msgspec.Struct, frozen=True):
    """An output the worker refused or could not find, and why."""

    path: str
    reason: str


class Usage(msgspec.Struct, frozen=True):
    max_rss_bytes: int | None = None
    cpu_seconds: float | None = None
    disk_bytes: int | None = None  # the most its directory held while it ran


class WorkerIdentity(msgspec.Struct, frozen=True):
    host: str
    pid: int
    version: str = VERSION
    name: str | None = None  # the worker's instance name (`--name`)

    @classmethod
    def of_this_host(cls, pid: int, name: str | None = None) -> WorkerIdentity:
        return cls(host=socket.gethostname(), pid=pid, name=name)


class JobResult(msgspec.Struct):
    id: str
    message_id: str
    status: Status
    worker: WorkerIdentity
    attempt: int
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    service: str | None = None
    queue: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    outputs: list[UploadedObject] = []
    skipped: list[SkippedPath] = []
    error: ErrorInfo | None = None
    usage: Usage = msgspec.field(default_factory=Usage)
    # False while an `error` will be retried; the client waits for the final one.
    final: bool = True

    def to_json(self) -> str:
        try:
            return msgspec.json.encode(self).decode()
        except UnicodeEncodeError:
            # Text from the job's side (file names that are not UTF-8, undecodable output)
            # is escaped rather than allowed to lose the result.
            return msgspec.json.encode(_escape_surrogates(msgspec.to_builtins(self))).decode()

    def summary(self) -> dict[str, Any]:
        """The fields a log line about this result carries (not the captured output)."""
        return {
            "job_id": self.id,
            "message_id": self.message_id,
            "service": self.service,
            "status": str(self.status),
            "attempt": self.attempt,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "duration_s": self.duration_s,
            "error": None if self.error is None else f"{self.error.type}: {self.error.message}",
            "final": self.final,
        }


def _escape_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_escape_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_escape_surrogates(key): _escape_surrogates(item) for key, item in value.items()}
    return value


class Progress(msgspec.Struct, frozen=True):
    percent: float | None = None
    message: str | None = None


class JobEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """A non-final message about a running job, for a request with `"events": true`: on the
    same destination as its result, with the result's identifying fields."""

    id: str
    message_id: str
    status: str  # "running" or "progress"
    worker: WorkerIdentity
    attempt: int
    final: bool
    service: str | None = None
    queue: str | None = None
    started_at: str | None = None  # running
    slot: int | None = None  # running: the worker's slot that runs it
    progress: Progress | None = None  # progress

    @classmethod
    def about(cls, result: JobResult, status: str, **fields: Any) -> JobEvent:
        return cls(
            id=result.id,
            message_id=result.message_id,
            status=status,
            worker=result.worker,
            attempt=result.attempt,
            final=False,
            service=result.service,
            queue=result.queue,
            **fields,
        )

    def to_json(self) -> str:
        return msgspec.json.encode(self).decode()


def utc_timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")

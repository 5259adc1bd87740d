"""The result message (DESIGN.md section 3)."""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from protocol.version import VERSION


class Status(StrEnum):
    ALIVE = "alive"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    KILLED = "killed"
    REJECTED = "rejected"
    ERROR = "error"


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str


@dataclass(frozen=True)
class UploadedObject:
    uri: str
    bytes: int


@dataclass(frozen=True)
class SkippedPath:
    """An output the worker refused or could not find, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Usage:
    max_rss_bytes: int | None = None
    cpu_seconds: float | None = None


@dataclass(frozen=True)
class WorkerIdentity:
    host: str
    pid: int
    version: str = VERSION

    @classmethod
    def of_this_host(cls, pid: int) -> WorkerIdentity:
        return cls(host=socket.gethostname(), pid=pid)


@dataclass
class JobResult:
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
    outputs: list[UploadedObject] = field(default_factory=list)
    skipped: list[SkippedPath] = field(default_factory=list)
    error: ErrorInfo | None = None
    usage: Usage = field(default_factory=Usage)
    # False while an `error` will be retried; the client waits for the final one.
    final: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


def utc_timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")

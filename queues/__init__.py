"""Queue backends behind one interface (queues.base.JobQueue)."""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

from protocol.body import DEFAULT_MAX_BODY_BYTES
from queues.base import JobQueue
from queues.local import DEFAULT_QUEUE_NAME, RESULTS_QUEUE_NAME, LocalQueue, check_queue_name
from queues.local_cancels import LocalCancels
from queues.sqs import SqsQueue, check_sqs_queue_name, is_sqs_url


def default_state_dir() -> Path:
    """Where the worker keeps its embedded queue and scratch space by default."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "api-worker"


def default_queue_spec() -> str:
    return f"local:{default_state_dir() / 'queue.sqlite3'}"


def default_instance_name(spec: str) -> str:
    """A readable name for the worker of a queue: the queue's own name and a digest of its whole
    address (`jobs-1c2d3e4f`), so that workers of different queues never share default paths.
    The digest is a CRC: it only tells addresses apart, and needs no OpenSSL in the children."""
    if is_sqs_url(spec):
        readable, address = spec.rstrip("/").rsplit("/", 1)[-1], spec.rstrip("/")
    else:
        location, _, name = spec.removeprefix("local:").partition("#")
        path = Path(location).expanduser().absolute()
        readable, address = f"{path.stem}-{name or DEFAULT_QUEUE_NAME}", f"local:{path}#{name or DEFAULT_QUEUE_NAME}"
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", readable).strip("-.")[:40] or "worker"
    return f"{readable}-{zlib.crc32(address.encode()):08x}"


def open_queue(
    spec: str, large_payload_bucket: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> JobQueue:
    """Open a queue from its command-line spec: `local:PATH[#NAME]` or an SQS queue URL.

    `large_payload_bucket`: where SQS messages over the size limit are stored (S3);
    `max_body_bytes`: the largest S3 payload a received pointer may bring in.
    """
    if is_sqs_url(spec):
        return SqsQueue(spec, large_payload_bucket, max_body_bytes)
    if spec.startswith("local:"):
        location, _, name = spec[len("local:") :].partition("#")
        if not location:
            raise ValueError(f"queue spec {spec!r} names no file: use local:PATH")
        queue = LocalQueue(Path(location).expanduser().absolute(), name or DEFAULT_QUEUE_NAME)
        queue.count()  # fail now, with the path in the message, if the file cannot be used
        return queue
    raise ValueError(f"unsupported queue spec {spec!r}: use local:PATH[#NAME] or an SQS queue URL")


def default_result_queue(job_queue: JobQueue) -> JobQueue | None:
    """The companion results queue of an embedded jobs queue; none for SQS (results are logged)."""
    if isinstance(job_queue, LocalQueue):
        return job_queue.sibling(RESULTS_QUEUE_NAME)
    return None


def local_cancel_marks(job_queue: JobQueue) -> LocalCancels | None:
    """Where cancel requests for the embedded queue's jobs are kept: its own file. None for SQS
    (only the shared job table keeps them there)."""
    if isinstance(job_queue, LocalQueue):
        return LocalCancels(job_queue.path, job_queue.name)
    return None


def check_reply_to(queue_spec: str, reply_to: str) -> None:
    """ValueError unless `reply_to` can name a queue of the jobs queue's kind (no network)."""
    if is_sqs_url(queue_spec):
        if not is_sqs_url(reply_to):
            check_sqs_queue_name(reply_to)
    else:
        check_queue_name(reply_to)

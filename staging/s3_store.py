"""`s3://` URIs through boto3's transfer manager (multipart, parallel parts).

Credentials, region and endpoint come from the standard AWS environment (`AWS_ENDPOINT_URL`,
`AWS_ENDPOINT_URL_S3`, profiles, instance roles), so any S3-compatible store works. botocore's
standard retry mode retries throttling, 5xx answers and dropped connections with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol.uris import ObjectUri, UriRejected, parse_uri
from staging.errors import StagingFault, StagingRejected
from staging.stores import StoredObject

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
STREAM_CHUNK = 1024 * 1024
PROGRESS_EVERY_S = 10.0
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class S3Store:
    """Thread-safe: one boto3 client, made on first use (boto3 is only imported then)."""

    def __init__(self, concurrency: int = 8) -> None:
        self.concurrency = concurrency
        self._client: Any = None
        self._transfer_config: TransferConfig | None = None
        self._lock = threading.Lock()

    def _s3(self) -> tuple[Any, TransferConfig]:
        with self._lock:
            if self._client is None:
                # Imported here: boto3 and a client add ~40 MB to a process, and most pool
                # children of a worker that never sees an s3:// URI should not carry them.
                import boto3  # noqa: PLC0415
                from boto3.s3.transfer import TransferConfig  # noqa: PLC0415
                from botocore.config import Config  # noqa: PLC0415

                config = Config(
                    retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                    # One connection per transfer thread: the outer pool times each file's parts.
                    max_pool_connections=self.concurrency * 10,
                )
                self._client = boto3.session.Session().client("s3", config=config)
                self._transfer_config = TransferConfig(max_concurrency=10, use_threads=True)
            assert self._transfer_config is not None
            return self._client, self._transfer_config

    def warm_up(self) -> None:
        """Import boto3 and make the client now rather than on the first transfer."""
        self._s3()

    def stat(self, uri: ObjectUri) -> StoredObject:
        client, _ = self._s3()
        try:
            head = client.head_object(Bucket=uri.bucket, Key=uri.key)
        except Exception as exc:
            raise _translate(exc, uri) from exc
        return StoredObject(uri, int(head["ContentLength"]))

    def list_prefix(self, prefix: ObjectUri) -> list[StoredObject]:
        client, _ = self._s3()
        found = []
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=prefix.bucket, Prefix=prefix.key):
                for item in page.get("Contents", []):
                    if item["Key"].endswith("/"):
                        continue  # a "folder" marker, not a file
                    # Every listed key must be safe to mirror locally, like one given by hand.
                    uri = _listed(f"s3://{prefix.bucket}/{item['Key']}")
                    found.append(StoredObject(uri, int(item["Size"])))
        except StagingRejected:
            raise
        except Exception as exc:
            raise _translate(exc, prefix) from exc
        return found

    def authorize_upload(self, destination: ObjectUri) -> None:
        pass  # S3 says no only when the upload is tried

    def download(self, source: StoredObject, destination: Path) -> None:
        client, config = self._s3()
        progress = _Progress("download", str(source.uri), source.size)
        try:
            if source.size < config.multipart_threshold:
                # One GET, no HEAD first and no transfer machinery: what many small files need.
                body = client.get_object(Bucket=source.uri.bucket, Key=source.uri.key)["Body"]
                with destination.open("wb") as handle:
                    for chunk in body.iter_chunks(STREAM_CHUNK):
                        handle.write(chunk)
            else:
                client.download_file(
                    source.uri.bucket, source.uri.key, str(destination), Config=config, Callback=progress
                )
        except Exception as exc:
            raise _translate(exc, source.uri) from exc
        progress.finish()

    def upload(self, source: Path, destination: ObjectUri) -> int:
        client, config = self._s3()
        size = source.stat().st_size
        progress = _Progress("upload", str(destination), size)
        try:
            if size < config.multipart_threshold:
                with source.open("rb") as handle:
                    client.put_object(Bucket=destination.bucket, Key=destination.key, Body=handle)
            else:
                client.upload_file(str(source), destination.bucket, destination.key, Config=config, Callback=progress)
        except Exception as exc:
            raise _translate(exc, destination) from exc
        progress.finish()
        return size


def _translate(exc: Exception, uri: ObjectUri) -> Exception:
    """A boto3 failure as the job's outcome: missing is the message's fault, the rest ours."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 (see S3Store._s3)

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _MISSING or status == "404":
            return StagingRejected(f"{uri}: no such object or bucket")
        if code in _DENIED or status == "403":
            return StagingFault(f"{uri}: access denied ({code or status})", retryable=False)
        return StagingFault(f"{uri}: storage error {code or status}: {exc}")
    if isinstance(exc, BotoCoreError | OSError):
        return StagingFault(f"{uri}: {type(exc).__name__}: {exc}")
    return exc


class _Progress:
    """A transfer callback that logs bytes and rate every PROGRESS_EVERY_S seconds."""

    def __init__(self, direction: str, uri: str, total: int) -> None:
        self.direction = direction
        self.uri = uri
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.last_log = self.started
        self._lock = threading.Lock()

    def __call__(self, chunk: int) -> None:
        with self._lock:
            self.done += chunk
            now = time.monotonic()
            if now - self.last_log < PROGRESS_EVERY_S:
                return
            self.last_log = now
        self._log("transfer progress")

    def finish(self) -> None:
        if self.last_log != self.started:  # only transfers long enough to have reported progress
            self._log("transfer done")

    def _log(self, message: str) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        log.info(
            message,
            extra={
                "direction": self.direction,
                "uri": self.uri,
                "bytes": self.done,
                "total_bytes": self.total,
                "mb_per_s": round(self.done / elapsed / 1e6, 1),
            },
        )


def _listed(text: str) -> ObjectUri:
    try:
        return parse_uri(text)
    except UriRejected as exc:
        raise StagingRejected(str(exc)) from None

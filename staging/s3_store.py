"""`s3://` URIs: listings and HEADs through boto3, bytes through obstore (Rust, I/O outside the GIL).

One engine per process: a boto3 client for the calls whose answers must be exact (listings
keep every key as S3 spells it; HEADs bring checksums) and an obstore store per bucket for GETs
and PUTs, all on the process's one transfer loop, under global bounds on requests in flight,
large-object parts in memory and open files. Credentials, region and endpoint come from boto3's
chain (staging.aws_chain), so any S3-compatible store works. Small objects take one GET pinned
to the listed ETag; large ones parallel ranged GETs pinned to it (`If-Match`), each part retried
on its own. Every byte is checked against what S3 says (staging.checksums).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from protocol.uris import ObjectUri, UriRejected, parse_uri
from staging import checksums, event_loop
from staging.aws_chain import BotoCredentials, engine_options
from staging.checksums import Expected, PartDigest
from staging.errors import StagingFault, StagingRejected
from staging.s3_errors import translate as _translate
from staging.stores import StoredObject
from staging.watch import TransferWatch

if TYPE_CHECKING:
    from obstore import GetOptions

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ATTEMPTS = 5  # per request, as botocore's standard retry mode counts them
PART_ATTEMPTS = 3  # a large object's part whose body broke off is fetched again, by range
PART_SIZE = 8 * 1024 * 1024
MIN_UPLOAD_PART = 5 * 1024 * 1024  # S3's smallest part but the last
PARTS_IN_MEMORY = 16  # large-object parts held at once, across the process
DEFAULT_REQUESTS_IN_FLIGHT = 64
LARGE_IN_MEMORY = 1024 * 1024  # a whole-object GET above this counts as a part held in memory
PROGRESS_EVERY_S = 10.0


class S3Store:
    """Thread-safe; boto3 and obstore are imported on first use (~40 MB a process)."""

    def __init__(self, concurrency: int = DEFAULT_REQUESTS_IN_FLIGHT, part_size: int = PART_SIZE) -> None:
        self.concurrency = concurrency
        self.part_size = part_size
        self._client: Any = None
        self._buckets: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._bounds: _Bounds | None = None

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3  # noqa: PLC0415 (see the class docstring)
                from botocore.config import Config  # noqa: PLC0415

                config = Config(
                    retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                    max_pool_connections=max(10, self.concurrency),
                )
                self._session = boto3.session.Session()
                self._client = self._session.client("s3", config=config)
            return self._client

    def _bucket(self, bucket: str) -> Any:
        client = self._s3()
        with self._lock:
            store = self._buckets.get(bucket)
            if store is None:
                from obstore.store import S3Store as ObStore  # noqa: PLC0415

                store = ObStore(
                    bucket,
                    **engine_options(client),
                    credential_provider=BotoCredentials(self._session),  # type: ignore[arg-type]
                    checksum_algorithm="sha256",  # S3 checks every PUT and part against it
                    retry_config={
                        "max_retries": MAX_ATTEMPTS - 1,
                        "backoff": {"init_backoff": timedelta(seconds=1), "max_backoff": timedelta(seconds=20)},
                    },
                )
                self._buckets[bucket] = store
            return store

    def stat(self, uri: ObjectUri) -> StoredObject:
        try:
            head = self._s3().head_object(Bucket=uri.bucket, Key=uri.key, ChecksumMode="ENABLED")
        except Exception as exc:
            raise _translate(exc, uri) from exc
        stored = StoredObject(
            uri,
            int(head["ContentLength"]),
            etag=checksums.bare_etag(head.get("ETag")),
            version=head.get("VersionId"),
            expected=checksums.from_head(head),
        )
        return self._with_part_size(stored)

    def list_pages(self, prefix: ObjectUri) -> Iterator[list[StoredObject]]:
        try:
            for page in self._s3().get_paginator("list_objects_v2").paginate(Bucket=prefix.bucket, Prefix=prefix.key):
                found = []
                for item in page.get("Contents", []):
                    if item["Key"].endswith("/"):
                        continue  # a "folder" marker, not a file
                    # Every listed key must be safe to mirror locally, like one given by hand.
                    uri = _listed(f"s3://{prefix.bucket}/{item['Key']}")
                    etag = checksums.bare_etag(item.get("ETag"))
                    found.append(StoredObject(uri, int(item["Size"]), etag=etag, expected=_listed_check(etag)))
                yield found
        except StagingRejected:
            raise
        except Exception as exc:
            raise _translate(exc, prefix) from exc

    def authorize_upload(self, destination: ObjectUri) -> None:
        pass  # S3 says no only when the upload is tried

    def download_all(self, downloads: Sequence[tuple[StoredObject, Path]], watch: TransferWatch) -> None:
        if downloads:
            event_loop.run(_all([partial(self._download, stored, path, watch) for stored, path in downloads]))

    def upload_all(self, uploads: Sequence[tuple[Path, ObjectUri]], watch: TransferWatch) -> list[int]:
        if not uploads:
            return []
        return event_loop.run(_all([partial(self._upload, path, uri, watch) for path, uri in uploads]))

    def _limits(self) -> _Bounds:
        if self._bounds is None:  # made on the loop's thread, its only user
            self._bounds = _Bounds(self.concurrency)
        return self._bounds

    async def _download(self, stored: StoredObject, path: Path, watch: TransferWatch) -> None:
        with watch.moving(str(stored.uri)):
            try:
                if stored.expected is None and stored.etag is not None and stored.size > 0:
                    stored = await asyncio.to_thread(self._described, stored)
                if stored.size <= (stored.part_size or self.part_size):
                    await self._download_whole(stored, path)
                else:
                    await self._download_parts(stored, path)
            except (StagingFault, StagingRejected):
                raise
            except Exception as exc:
                raise _translate(exc, stored.uri) from exc

    def _described(self, stored: StoredObject) -> StoredObject:
        """A listed object whose ETag is no MD5: its checksum (and part size) from a HEAD."""
        described = self.stat(stored.uri)
        if described.etag != stored.etag:
            raise StagingFault(f"{stored.uri}: changed while being read (its ETag is no longer {stored.etag})")
        return described

    def _with_part_size(self, stored: StoredObject) -> StoredObject:
        if stored.expected is None or not stored.expected.per_part or stored.expected.parts < 2:
            return stored
        try:
            head = self._s3().head_object(Bucket=stored.uri.bucket, Key=stored.uri.key, PartNumber=1)
        except Exception as exc:
            raise _translate(exc, stored.uri) from exc
        return replace(stored, part_size=int(head["ContentLength"]))

    def _pinned(self, stored: StoredObject, **options: Any) -> GetOptions:
        """GET options that fail (412) if the object is no longer the one listed."""
        pinned: Any = {**options, "if_match": f'"{stored.etag}"'} if stored.etag else options
        return cast("GetOptions", pinned)

    async def _download_whole(self, stored: StoredObject, path: Path) -> None:
        import obstore  # noqa: PLC0415

        bounds = self._limits()
        large = stored.size > LARGE_IN_MEMORY
        async with bounds.parts if large else _NO_BOUND:
            async with bounds.requests:
                store = self._bucket(stored.uri.bucket)
                result = await obstore.get_async(store, stored.uri.key, options=self._pinned(stored))
                data = await result.bytes_async()
            async with bounds.files:
                # Off the loop: hashing and writing would stall every other transfer.
                await asyncio.to_thread(_check_and_write, stored, memoryview(data), path)

    async def _download_parts(self, stored: StoredObject, path: Path) -> None:
        part_size = stored.part_size or self.part_size
        ranges = [(start, min(start + part_size, stored.size)) for start in range(0, stored.size, part_size)]
        expected = stored.expected
        digests: list[PartDigest | None] = [None] * len(ranges)
        progress = _Progress("download", str(stored.uri), stored.size)
        async with self._limits().files:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(descriptor, stored.size)

                async def part(index: int, start: int, end: int) -> None:
                    digests[index] = await self._fetch_part(stored, start, end, descriptor)
                    progress(end - start)

                await _all([partial(part, index, start, end) for index, (start, end) in enumerate(ranges)])
            finally:
                os.close(descriptor)
        if expected is not None:
            if expected.combinable:
                actual = checksums.combined(expected, [digest for digest in digests if digest is not None])
            else:
                actual = await asyncio.to_thread(checksums.file_value, expected, path, stored.part_size)
            checksums.check(expected, actual, str(stored.uri))
        progress.finish()

    async def _fetch_part(self, stored: StoredObject, start: int, end: int, descriptor: int) -> PartDigest | None:
        import obstore  # noqa: PLC0415
        from obstore.exceptions import GenericError  # noqa: PLC0415

        bounds = self._limits()
        async with bounds.parts:
            for attempt in range(1, PART_ATTEMPTS + 1):
                try:
                    async with bounds.requests:
                        options = self._pinned(stored, range=(start, end))
                        store = self._bucket(stored.uri.bucket)
                        result = await obstore.get_async(store, stored.uri.key, options=options)
                        data = await result.bytes_async()
                    if len(data) != end - start:
                        raise StagingFault(f"{stored.uri}: bytes {start}-{end} came back {len(data)} long")
                    break
                except (GenericError, StagingFault) as exc:
                    if attempt == PART_ATTEMPTS:
                        raise
                    log.warning(
                        "part transfer broke off; fetching it again",
                        extra={"uri": str(stored.uri), "start": start, "attempt": attempt, "error": str(exc)},
                    )
            view = memoryview(data)
            digest = None
            if stored.expected is not None and stored.expected.combinable:
                digest = await asyncio.to_thread(checksums.digest_part, stored.expected, view)
            await asyncio.to_thread(os.pwrite, descriptor, view, start)
            return digest

    async def _upload(self, source: Path, destination: ObjectUri, watch: TransferWatch) -> int:
        import obstore  # noqa: PLC0415

        with watch.moving(str(destination)):
            try:
                size = source.stat().st_size
                store = self._bucket(destination.bucket)
                part_size = max(self.part_size, MIN_UPLOAD_PART)
                if size <= part_size:
                    async with self._limits().requests:
                        await obstore.put_async(store, destination.key, source.read_bytes(), use_multipart=False)
                else:
                    async with self._limits().files, self._limits().requests:
                        await obstore.put_async(
                            store, destination.key, source, chunk_size=part_size, max_concurrency=PARTS_IN_MEMORY // 2
                        )
                return size
            except (StagingFault, StagingRejected):
                raise
            except Exception as exc:
                raise _translate(exc, destination) from exc


class _Bounds:
    """The process's limits on the transfer loop (asyncio primitives: made on that loop)."""

    def __init__(self, requests: int) -> None:
        self.requests = asyncio.Semaphore(requests)
        self.parts = asyncio.Semaphore(PARTS_IN_MEMORY)
        self.files = asyncio.Semaphore(requests)


_NO_BOUND = contextlib.nullcontext()


async def _all(starters: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run every coroutine; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(start()) for start in starters]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    failed = next((task for task in tasks if not task.cancelled() and task.exception() is not None), None)
    if failed is not None:
        raise failed.exception()  # type: ignore[misc]
    return [task.result() for task in tasks]


def _listed_check(etag: str | None) -> Expected | None:
    """What a listing entry alone proves: a plain MD5 ETag (else a HEAD at download time)."""
    expected = checksums.from_etag(etag)
    return expected if expected is not None and expected.kind == "md5" else None


class _Progress:
    """Counts a large transfer's bytes and logs them with the rate every PROGRESS_EVERY_S seconds."""

    def __init__(self, direction: str, uri: str, total: int) -> None:
        self.direction = direction
        self.uri = uri
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.last_log = self.started

    def __call__(self, chunk: int) -> None:
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


def _check_and_write(stored: StoredObject, data: memoryview, path: Path) -> None:
    """Check the bytes against what S3 says they are, then write them to `path`."""
    if stored.expected is not None:
        checksums.check(stored.expected, checksums.whole(stored.expected, data), str(stored.uri))
    with path.open("wb") as handle:
        handle.write(data)


def _listed(text: str) -> ObjectUri:
    try:
        return parse_uri(text)
    except UriRejected as exc:
        raise StagingRejected(str(exc)) from None

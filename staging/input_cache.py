"""A box-wide cache of s3:// inputs, handed to each job by hard link.

Keyed by bucket, key and the object's current ETag (or version), as the listing or a HEAD
says now, so a changed object is never served stale. One download per key at a time across
the box: a per-key `flock` (workers sharing the directory take turns; a second job waits for
the first one's download and links it). Entries are read-only; before each link an entry is
checked against what the cache recorded (size, mtime, ctime, inode, no write bits), so a job
that made its linked input writable and changed it is caught: the entry is checked by content
against S3's checksum, or dropped and fetched again. A job's links are given back when its
directory is cleaned (`release`), which records the entry's new ctime. Least recently used
entries no job holds (link count 1) are evicted over the size, or while the filesystem is
below the worker's disk reserve.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from staging import checksums
from staging.errors import StagingFault
from staging.stores import StoredObject

log = logging.getLogger(__name__)
FetchAll = Callable[[list[tuple[StoredObject, Path]]], None]
DEFAULT_INPUT_CACHE_SIZE = "10G"
BATCH = 256  # keys locked at once while their objects download (each lock is an open file)


@dataclass(frozen=True)
class InputCacheSettings:
    directory: Path
    size_bytes: int
    reserve_bytes: int  # the scratch filesystem's --disk-reserve


@dataclass
class CacheCounters:
    """Inputs linked from the cache (hits) or downloaded into it (misses), and entries evicted."""

    hits: int = 0
    misses: int = 0
    bytes_saved: int = 0
    bytes_fetched: int = 0
    evicted: int = 0

    def since(self, earlier: CacheCounters) -> CacheCounters:
        """What was counted after `earlier`, a copy of these counters."""
        return CacheCounters(*(getattr(self, name) - getattr(earlier, name) for name in _COUNTER_NAMES))

    def copy(self) -> CacheCounters:
        return replace(self)


_COUNTER_NAMES = tuple(field.name for field in fields(CacheCounters))


@dataclass(frozen=True)
class CachedLink:
    """A job's hard link to an entry, to give back when the job's directory is cleaned."""

    path: Path
    entry: str  # the entry's name in the cache


@dataclass
class _Claim:
    stored: StoredObject
    local: Path
    name: str
    lock: int  # an open descriptor holding the key's flock


class InputCache:
    def __init__(self, directory: Path, size_bytes: int, reserve_bytes: int = 0) -> None:
        self.directory = directory
        self.size_bytes = size_bytes
        self.reserve_bytes = reserve_bytes
        self.objects = directory / "objects"
        self.locks = directory / "locks"
        for path in (self.objects, self.locks):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.counters = CacheCounters()
        self._counter_lock = threading.Lock()

    @staticmethod
    def cacheable(stored: StoredObject) -> bool:
        return stored.uri.scheme == "s3" and bool(stored.etag or stored.version)

    def provide(self, group: Sequence[tuple[StoredObject, Path]], fetch_all: FetchAll) -> list[CachedLink]:
        """Put each object at its path: linked from the cache, or fetched into it first.
        `fetch_all` downloads (object, path) pairs; objects that cannot be keyed go through it
        directly. Returns the links made, for `release`."""
        direct = [(stored, local) for stored, local in group if not self.cacheable(stored)]
        if direct:
            fetch_all(direct)
        cacheable = [(stored, local) for stored, local in group if self.cacheable(stored)]
        links: list[CachedLink] = []
        fetched = False
        for start in range(0, len(cacheable), BATCH):
            fetched |= self._provide_batch(cacheable[start : start + BATCH], fetch_all, links)
        # Only a download makes the cache bigger; the disk may fill up by other means.
        if fetched or shutil.disk_usage(self.directory).free < self.reserve_bytes:
            self.evict()
        return links

    def _provide_batch(
        self, batch: Sequence[tuple[StoredObject, Path]], fetch_all: FetchAll, links: list[CachedLink]
    ) -> bool:
        """Link or fetch each object, adding to `links`; whether anything was downloaded."""
        waiting: list[tuple[StoredObject, Path, str]] = []  # someone else on the box is fetching these
        mine: list[_Claim] = []
        try:
            for stored, local in batch:
                name = entry_name(stored)
                lock = self._try_lock(name)
                if lock is None:
                    waiting.append((stored, local, name))
                elif self._link_if_valid(stored, name, local):
                    _unlock(lock)
                    links.append(CachedLink(local, name))
                else:
                    mine.append(_Claim(stored, local, name, lock))
            self._fetch_claimed(mine, fetch_all)
            links += [CachedLink(claim.local, claim.name) for claim in mine]
        finally:
            for claim in mine:
                _unlock(claim.lock)
        fetched = bool(mine)
        for stored, local, name in waiting:
            lock = self._lock(name)
            try:
                if not self._link_if_valid(stored, name, local):
                    self._fetch_claimed([_Claim(stored, local, name, lock)], fetch_all)
                    fetched = True
                links.append(CachedLink(local, name))
            finally:
                _unlock(lock)
        return fetched

    def _fetch_claimed(self, claims: list[_Claim], fetch_all: FetchAll) -> None:
        if not claims:
            return
        for claim in claims:
            self._drop(claim.name)
        fetch_all([(claim.stored, self.objects / claim.name) for claim in claims])
        for claim in claims:
            entry = self.objects / claim.name
            os.chmod(entry, 0o444)
            self._link(claim.name, claim.local)
            self._record(claim.name, claim.stored, entry.stat())  # after the link: its ctime is the one to keep
            self._count(hit=False, size=claim.stored.size)

    def _link_if_valid(self, stored: StoredObject, name: str, local: Path) -> bool:
        """Link the entry into the job if it is there and unchanged (the key's lock is held)."""
        entry = self.objects / name
        try:
            status = entry.stat()
            record = json.loads((self.objects / f"{name}.json").read_text())
        except (OSError, ValueError):
            return False
        if record.get("size") != stored.size or not self._unchanged(entry, status, record, stored):
            log.warning("input cache entry changed since it was stored; fetching it again",
                        extra={"uri": str(stored.uri), "entry": name})  # fmt: skip
            self._drop(name)
            return False
        self._link(name, local)
        self._touch(name, entry.stat())
        self._count(hit=True, size=stored.size)
        return True

    def _unchanged(self, entry: Path, status: os.stat_result, record: dict[str, object], stored: StoredObject) -> bool:
        if status.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or status.st_size != stored.size:
            return False
        if (status.st_ino, status.st_mtime_ns) != (record.get("inode"), record.get("mtime_ns")):
            return False
        if status.st_ctime_ns == record.get("ctime_ns"):
            return True
        # Changed metadata without a link given back (a job killed before its clean-up, say):
        # the bytes decide, when S3 told us what they must be.
        if stored.expected is None:
            return False
        try:
            intact = checksums.file_value(stored.expected, entry, stored.part_size) == stored.expected.value
        except OSError:
            return False
        if intact:
            self._record(entry.name, stored, entry.stat())
        return intact

    def _link(self, name: str, local: Path) -> None:
        entry = self.objects / name
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(entry, local)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise StagingFault(f"could not link a cached input into the job: {exc}") from exc
            shutil.copyfile(entry, local)  # the scratch directory is on another filesystem
            os.chmod(local, 0o444)

    def release(self, links: Sequence[CachedLink]) -> None:
        """Remove a job's links, recording each entry's new ctime; an entry that changed while
        the job held it (made writable, written, its metadata touched) is dropped."""
        for link in links:
            lock = self._lock(link.entry)
            try:
                self._release(link)
            finally:
                _unlock(lock)

    def _release(self, link: CachedLink) -> None:
        entry = self.objects / link.entry
        try:
            linked = link.path.lstat()
            status = entry.stat()
            record = json.loads((self.objects / f"{link.entry}.json").read_text())
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                link.path.unlink()
            return
        if linked.st_ino != status.st_ino:
            link.path.unlink()  # the job put something else there: the entry is not its business
            return
        intact = status.st_ctime_ns == record.get("ctime_ns") and not status.st_mode & stat.S_IWUSR
        link.path.unlink()
        if intact:
            self._touch(link.entry, entry.stat())
        else:
            log.warning("a job changed its cached input; dropping the entry", extra={"entry": link.entry})
            self._drop(link.entry)

    def evict(self) -> None:
        """Drop least recently used entries no job holds while over the size or the reserve."""
        entries = []
        total = 0
        for record_path in self.objects.glob("*.json"):
            name = record_path.name.removesuffix(".json")
            try:
                status = (self.objects / name).stat()
                used = float(json.loads(record_path.read_text()).get("used", 0))
            except (OSError, ValueError):
                continue
            total += status.st_size
            if status.st_nlink == 1:
                entries.append((used, name, status.st_size))
        entries.sort()
        for _, name, size in entries:
            if total <= self.size_bytes and shutil.disk_usage(self.directory).free >= self.reserve_bytes:
                break
            lock = self._try_lock(name)
            if lock is None:
                continue
            try:
                if (self.objects / name).stat().st_nlink == 1:
                    self._drop(name)
                    total -= size
                    with self._counter_lock:
                        self.counters.evicted += 1
            except OSError:
                continue
            finally:
                _unlock(lock)

    def usage(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        count = size = 0
        for entry in self.objects.iterdir():
            if not entry.name.endswith(".json"):
                with contextlib.suppress(OSError):
                    size += entry.stat().st_size
                    count += 1
        return count, size

    def _record(self, name: str, stored: StoredObject, status: os.stat_result) -> None:
        record = {"uri": str(stored.uri), "etag": stored.etag, "version": stored.version, "size": status.st_size,
                  "inode": status.st_ino, "mtime_ns": status.st_mtime_ns, "ctime_ns": status.st_ctime_ns,
                  "used": time.time()}  # fmt: skip
        _write_atomically(self.objects / f"{name}.json", json.dumps(record))

    def _touch(self, name: str, status: os.stat_result) -> None:
        """After a link was made or given back: the entry's new ctime, and when it was last used."""
        path = self.objects / f"{name}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        record.update(ctime_ns=status.st_ctime_ns, used=time.time())
        _write_atomically(path, json.dumps(record))

    def _drop(self, name: str) -> None:
        for path in (self.objects / name, self.objects / f"{name}.json"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _lock(self, name: str) -> int:
        """The key's lock, waiting for whoever holds it; an open descriptor to `_unlock`."""
        descriptor = os.open(self.locks / name, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        return descriptor

    def _try_lock(self, name: str) -> int | None:
        """The key's lock if it is free now, else None."""
        descriptor = os.open(self.locks / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return None
        return descriptor

    def _count(self, *, hit: bool, size: int) -> None:
        with self._counter_lock:
            if hit:
                self.counters.hits += 1
                self.counters.bytes_saved += size
            else:
                self.counters.misses += 1
                self.counters.bytes_fetched += size


def entry_name(stored: StoredObject) -> str:
    """The entry's file name: a digest of bucket, key and ETag or version."""
    import hashlib  # noqa: PLC0415 (OpenSSL only in a child that stages s3:// inputs)

    identity = "\0".join((stored.uri.bucket, stored.uri.key, stored.etag or "", stored.version or ""))
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()


def _unlock(descriptor: int) -> None:
    os.close(descriptor)  # closing the descriptor drops its flock


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(text)
    temporary.replace(path)

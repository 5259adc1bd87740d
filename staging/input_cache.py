"""A box-wide cache of s3:// inputs, handed to each job by hard link.

Keyed by bucket, key and the object's current ETag (or version), as the listing or a HEAD
says now, so a changed object is never served stale. One download per key at a time across
the box: a per-key `flock` (workers sharing the directory take turns; a second job waits for
the first one's download and links it). Entries are read-only; before each link an entry is
checked against what the cache recorded (size, mtime, ctime, inode, no write bits), so a job
that made its linked input writable and changed it is caught: the entry is checked by content
against S3's checksum, or dropped and fetched again. A job's links are given back when its
directory is cleaned (`release`), which records the entry's new ctime. An entry's record
lives in its key's lock file (staging.cache_keys), rewritten in place. Least recently used
entries no job holds (link count 1) are evicted over the size, or while the filesystem is
below the worker's disk reserve.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from staging import checksums
from staging.cache_keys import KeyFile, last_used_ns
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
    key: KeyFile  # locked until the object is fetched and linked


class InputCache:
    def __init__(self, directory: Path, size_bytes: int, reserve_bytes: int = 0) -> None:
        self.directory = directory
        self.size_bytes = size_bytes
        self.reserve_bytes = reserve_bytes
        self.objects = directory / "objects"
        self.keys = directory / "keys"
        for path in (self.objects, self.keys):
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
                key = self._key_if_free(name)
                if key is None:
                    waiting.append((stored, local, name))
                elif self._link_if_valid(key, stored, name, local):
                    key.close()
                    links.append(CachedLink(local, name))
                else:
                    mine.append(_Claim(stored, local, name, key))
            self._fetch_claimed(mine, fetch_all)
            links += [CachedLink(claim.local, claim.name) for claim in mine]
        finally:
            for claim in mine:
                claim.key.close()
        fetched = bool(mine)
        for stored, local, name in waiting:
            key = self._locked_key(name)
            with key:
                if not self._link_if_valid(key, stored, name, local):
                    self._fetch_claimed([_Claim(stored, local, name, key)], fetch_all)
                    fetched = True
                links.append(CachedLink(local, name))
        return fetched

    def _fetch_claimed(self, claims: list[_Claim], fetch_all: FetchAll) -> None:
        if not claims:
            return
        for claim in claims:
            self._drop_entry(claim.name)
        fetch_all([(claim.stored, self.objects / claim.name) for claim in claims])
        for claim in claims:
            entry = self.objects / claim.name
            os.chmod(entry, 0o444)
            self._link(claim.name, claim.local)
            claim.key.write(_record(claim.stored, entry.stat()))  # after the link: its ctime is the one to keep
            self._count(hit=False, size=claim.stored.size)

    def _link_if_valid(self, key: KeyFile, stored: StoredObject, name: str, local: Path) -> bool:
        """Link the entry into the job if it is there and unchanged (its key is locked)."""
        entry = self.objects / name
        record = key.record()
        try:
            status = entry.stat()
        except OSError:
            return False
        if record is None or not self._unchanged(key, entry, status, record, stored):
            log.warning(
                "input cache entry changed since it was stored; fetching it again",
                extra={"uri": str(stored.uri), "entry": name},
            )
            self._drop_entry(name)
            return False
        self._link(name, local)
        key.write({**record, "ctime_ns": entry.stat().st_ctime_ns})
        self._count(hit=True, size=stored.size)
        return True

    def _unchanged(
        self, key: KeyFile, entry: Path, status: os.stat_result, record: dict[str, object], stored: StoredObject
    ) -> bool:
        if status.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            return False
        recorded = (record.get("size"), record.get("inode"), record.get("mtime_ns"))
        if status.st_size != stored.size or recorded != (stored.size, status.st_ino, status.st_mtime_ns):
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
            key.write(_record(stored, entry.stat()))
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
            with self._locked_key(link.entry) as key:
                self._release(key, link)

    def _release(self, key: KeyFile, link: CachedLink) -> None:
        entry = self.objects / link.entry
        record = key.record()
        try:
            same = link.path.lstat().st_ino == entry.stat().st_ino
        except OSError:
            same = False
        if record is None or not same:
            # Gone, or the job put something else there: the entry is not its business.
            with contextlib.suppress(OSError):
                link.path.unlink()
            return
        status = entry.stat()
        intact = status.st_ctime_ns == record.get("ctime_ns") and not status.st_mode & stat.S_IWUSR
        link.path.unlink()
        if intact:
            key.write({**record, "ctime_ns": entry.stat().st_ctime_ns})
        else:
            log.warning("a job changed its cached input; dropping the entry", extra={"entry": link.entry})
            self._forget(key, link.entry)

    def evict(self) -> None:
        """Drop least recently used entries no job holds while over the size or the reserve."""
        entries = []
        total = 0
        for entry in self._entries():
            try:
                status = entry.stat()
            except OSError:
                continue
            total += status.st_size
            if status.st_nlink == 1:
                entries.append((last_used_ns(self.keys / entry.name), entry.name, status.st_size))
        entries.sort()
        for _, name, size in entries:
            if total <= self.size_bytes and shutil.disk_usage(self.directory).free >= self.reserve_bytes:
                break
            key = self._key_if_free(name)
            if key is None:
                continue
            with key:
                try:
                    if (self.objects / name).stat().st_nlink != 1:
                        continue
                except OSError:
                    continue
                self._forget(key, name)
                total -= size
                with self._counter_lock:
                    self.counters.evicted += 1

    def usage(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        count = size = 0
        for entry in self._entries():
            with contextlib.suppress(OSError):
                size += entry.stat().st_size
                count += 1
        return count, size

    def _entries(self) -> list[Path]:
        """Every entry's data file (not one being downloaded: those have a suffix)."""
        return [entry for entry in self.objects.iterdir() if "." not in entry.name]

    def _key_if_free(self, name: str) -> KeyFile | None:
        """The key's file, locked, if no one else holds it now."""
        return KeyFile.lock(self.keys / name, wait=False)

    def _locked_key(self, name: str) -> KeyFile:
        """The key's file, locked once whoever holds it lets go."""
        return KeyFile.lock(self.keys / name)

    def _drop_entry(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.objects / name).unlink()

    def _forget(self, key: KeyFile, name: str) -> None:
        """The entry and its key's file, removed (the key is locked)."""
        self._drop_entry(name)
        key.remove()

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


def _record(stored: StoredObject, status: os.stat_result) -> dict[str, object]:
    return {
        "uri": str(stored.uri),
        "etag": stored.etag,
        "version": stored.version,
        "size": status.st_size,
        "inode": status.st_ino,
        "mtime_ns": status.st_mtime_ns,
        "ctime_ns": status.st_ctime_ns,
    }

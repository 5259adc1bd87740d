"""An input cache key's file: its lock and, while its entry exists, its record.

The file is locked with `flock` by whoever links, fetches, gives back or evicts the key's
entry, and holds the entry's record (JSON), rewritten in place under the lock: linking an
entry or giving it back creates no file, which on a busy disk costs more than the link itself.
The file's mtime is when the entry was last used. The file is removed with its entry, under
its lock; whoever was waiting for that lock finds another file (or none) at the path, and
locks that one instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any, overload

MAX_RECORD_BYTES = 64 * 1024


class KeyFile:
    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor = descriptor

    @overload
    @classmethod
    def lock(cls, path: Path) -> KeyFile: ...

    @overload
    @classmethod
    def lock(cls, path: Path, *, wait: bool) -> KeyFile | None: ...

    @classmethod
    def lock(cls, path: Path, *, wait: bool = True) -> KeyFile | None:
        """The key's file, locked; None when another holder has it and `wait` is False."""
        while True:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                return None
            try:
                if os.fstat(descriptor).st_ino == os.stat(path).st_ino:
                    return cls(path, descriptor)
            except FileNotFoundError:
                pass
            os.close(descriptor)  # removed while this waited for it: lock the file there now

    def record(self) -> dict[str, Any] | None:
        """The entry's record; None when there is none, or it is unreadable (torn by a crash)."""
        data = os.pread(self._descriptor, MAX_RECORD_BYTES, 0)
        try:
            record = json.loads(data) if data else None
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    def write(self, record: dict[str, Any]) -> None:
        data = json.dumps(record).encode()
        os.pwrite(self._descriptor, data, 0)
        os.ftruncate(self._descriptor, len(data))

    def remove(self) -> None:
        """Remove the file while it is locked: the key is forgotten."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        os.close(self._descriptor)  # closing the descriptor drops its flock

    def __enter__(self) -> KeyFile:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def last_used_ns(path: Path) -> int:
    """When the key's entry was last used (its file's mtime); 0 for an entry with no key file."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0

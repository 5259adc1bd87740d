"""An exclusive lock on a per-worker path, held for the worker's life: a second worker pointed at
the same path is told which process holds it, before it touches anything."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class PathInUse(Exception):
    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is in use by another worker (pid {holder})")
        self.path = path
        self.holder = holder


def hold_lock(lock_path: Path) -> IO[bytes]:
    """Lock `lock_path` (made if absent, with its folder) and write this process's pid in it;
    keep the returned file open for as long as the lock is to be held (closed by exec and by
    the process's death: a lock never outlives its holder). PathInUse if another holds it;
    OSError if it cannot be made."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock_file = lock_path.open("a+b")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = lock_file.read().decode(errors="replace").strip() or "unknown"
        lock_file.close()
        raise PathInUse(lock_path, holder) from None
    lock_file.truncate(0)
    lock_file.write(str(os.getpid()).encode())
    lock_file.flush()
    return lock_file

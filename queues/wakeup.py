"""Wake-ups for the embedded queue: a worker listening on a queue is told at once when a
message may have become receivable on it, instead of finding out at its next poll.

Each listener is a named pipe in a directory beside the queue file, one directory per queue
name (`QUEUE_FILE.wake/q-NAME/`); whoever changes a queue writes a byte to every pipe in its
directory (a queue nobody listens on has none: one failed system call). A listener keeps its
own pipe open for writing too, so the pipe never reports end-of-file when a writer closes. A
pipe whose listener died (nobody reading) is removed by the next writer. Wake-ups are a
shortcut only: a listener still polls now and then, and one that cannot be made or reached
costs nothing but latency.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def wakeup_directory(queue_file: Path) -> Path:
    return queue_file.with_name(queue_file.name + ".wake")


def _listeners_of(directory: Path, queue_name: str) -> Path:
    return directory / f"q-{queue_name}"  # a prefix, as "." and ".." are queue names too


class WakeupListener:
    """A named pipe a worker reads its wake-ups from; `fileno` goes into its selector."""

    def __init__(self, directory: Path, queue_name: str) -> None:
        listeners = _listeners_of(directory, queue_name)
        listeners.mkdir(mode=0o700, parents=True, exist_ok=True)
        # os.urandom, not secrets: every pool child imports this module, and secrets brings
        # OpenSSL's hashlib along (4 MB of memory per child).
        self.path = listeners / f"{os.getpid()}-{os.urandom(4).hex()}"
        os.mkfifo(self.path, 0o600)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.path.unlink(missing_ok=True)
            raise

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._fd, 4096):
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self.path.unlink(missing_ok=True)


def wake_listeners(directory: Path, queue_name: str) -> None:
    """Wake every worker listening on the queue; never raises."""
    try:
        entries = list(os.scandir(_listeners_of(directory, queue_name)))
    except OSError:
        return  # no listener has ever been here
    for entry in entries:
        _wake(entry)


def _wake(entry: os.DirEntry[str]) -> None:
    try:
        if not stat.S_ISFIFO(entry.stat(follow_symlinks=False).st_mode):
            return
        fd = os.open(entry.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # nobody reads it: its listener is gone
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        return
    try:
        os.write(fd, b"\0")
    except BlockingIOError:
        pass  # full: the listener has wake-ups waiting already
    except OSError as exc:
        log.debug("could not wake a listener", extra={"pipe": entry.path, "error": str(exc)})
    finally:
        os.close(fd)

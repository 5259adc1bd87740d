"""The self-pipe that wakes the supervisor's loop: from a signal handler (which only records
the signal) or from a helper thread that has something for the loop. It lives as long as the
process: a helper thread may still wake it as the supervisor exits, and a closed descriptor's
number could by then name another file."""

from __future__ import annotations

import contextlib
import os


class Waker:
    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def fileno(self) -> int:
        """Readable when the loop was woken."""
        return self._read

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe: the loop is awake anyway
            os.write(self._write, b"\0")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 512):
                pass

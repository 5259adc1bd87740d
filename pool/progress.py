"""A running job's progress file, watched for a request with `"events": true`.

The job appends lines to the file its `API_WORKER_PROGRESS` names: `PERCENT [MESSAGE]`
(`40`, `40% reading input`) or just `MESSAGE`. The latest good line becomes a progress event,
at most one per interval; the last one before the job ends is never lost. A line that cannot
be read (not UTF-8, a percentage outside 0-100) is skipped and logged once per job. The file
is read by its tail, so a job that floods it costs the worker little.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common import faults
from common.thread_health import ThreadHealth, run_guarded
from protocol.result import Progress

log = logging.getLogger(__name__)
CHECK_EVERY_S = 0.1
TAIL_BYTES = 64 * 1024  # of what was appended since the last look, only this much is read
MAX_MESSAGE_CHARS = 1000


class Malformed(ValueError):
    pass


def parse_progress(line: bytes) -> Progress | None:
    """The progress a line reports; None for a blank line; Malformed if it cannot be read."""
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Malformed("not UTF-8 text") from None
    if not text:
        return None
    first, _, rest = text.partition(" ")
    try:
        percent = float(first.removesuffix("%"))
    except ValueError:
        return Progress(None, text[:MAX_MESSAGE_CHARS])
    if not math.isfinite(percent) or not 0 <= percent <= 100:
        raise Malformed(f"percentage {first!r} is not from 0 to 100")
    return Progress(percent, rest.strip()[:MAX_MESSAGE_CHARS] or None)


class ProgressWatcher:
    """Reads the file every CHECK_EVERY_S on a thread of its own while the job runs."""

    def __init__(self, path: Path, interval_s: float, emit: Callable[[Progress], None]) -> None:
        self.path = path
        self.interval_s = interval_s
        self.emit = emit
        self._offset = 0
        self._latest: Progress | None = None  # read, not yet sent
        self._sent_at = -math.inf
        self._complained = False
        self._stop = threading.Event()
        self.health = ThreadHealth("progress")
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        """The job has ended: a last look, and what was read and not yet sent goes out."""
        self._stop.set()
        self._thread.join()
        self._look(final=True)
        if self._latest is not None:
            self._send()

    def _run(self) -> None:
        run_guarded(self.health, self._check, self._stop, CHECK_EVERY_S)

    def _check(self) -> None:
        faults.check("progress")
        self._look(final=False)
        if self._latest is not None and time.monotonic() - self._sent_at >= self.interval_s:
            self._send()

    def _send(self) -> None:
        assert self._latest is not None
        progress, self._latest = self._latest, None
        self._sent_at = time.monotonic()
        try:
            self.emit(progress)
        except Exception:  # an event is never worth the job
            log.warning("could not pass on the job's progress", exc_info=True)

    def _look(self, *, final: bool) -> None:
        lines = self._new_lines(final)
        for line in reversed(lines):
            try:
                progress = parse_progress(line)
            except Malformed as exc:
                self._complain(str(exc))
                continue
            if progress is not None:
                self._latest = progress
                return

    def _new_lines(self, final: bool) -> list[bytes]:
        """Whole lines appended since the last look (and, at the end, an unfinished last one)."""
        try:
            descriptor = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return []  # not written (yet), or not a file the worker will follow
        with contextlib.closing(os.fdopen(descriptor, "rb")) as progress_file:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                return []
            if status.st_size < self._offset:  # rewritten from the start
                self._offset = 0
            start = max(self._offset, status.st_size - TAIL_BYTES)
            progress_file.seek(start)
            data = progress_file.read(status.st_size - start)
        if start > self._offset:  # skipped ahead: the first line read is a fragment
            data = data.partition(b"\n")[2]
        complete, _, unfinished = data.rpartition(b"\n")
        self._offset = status.st_size - len(unfinished)
        lines = complete.split(b"\n") if complete else []
        if final and unfinished:
            lines.append(unfinished)
        return lines

    def _complain(self, problem: str) -> None:
        if not self._complained:
            self._complained = True
            log.warning("ignoring a line of the progress file", extra={"problem": problem, "path": str(self.path)})

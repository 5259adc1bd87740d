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
from collections.abc import Callable, Iterable
from pathlib import Path

from common import faults
from common.thread_health import ThreadHealth, log_failure
from protocol.result import Progress

log = logging.getLogger(__name__)
CHECK_EVERY_S = 0.1
IDLE_AFTER_S = 2.0  # the ticker sleeps untimed once no job was watched for this long
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
    """One job's progress file, looked at by the process's `ProgressTicker` every
    CHECK_EVERY_S while the job runs. `announce` (the job's `running` event) goes out first, at
    the first look or when the job ends: a job shorter than that costs no wake-up of its own."""

    def __init__(
        self,
        path: Path,
        interval_s: float,
        emit: Callable[[Progress], None],
        announce: Callable[[], None] | None = None,
        ticker: ProgressTicker | None = None,
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.emit = emit
        self._announce = announce
        self._ticker = ticker or _process_ticker()
        self._offset = 0
        self._latest: Progress | None = None  # read, not yet sent
        self._sent_at = -math.inf
        self._complained = False
        self._first_look_at = math.inf
        self._lock = threading.Lock()  # the ticker's look and the job's end, one at a time
        self._ended = False

    def start(self) -> None:
        self._first_look_at = time.monotonic() + CHECK_EVERY_S
        self._ticker.add(self)

    def finish(self) -> None:
        """The job has ended: a last look, and what was read and not yet sent goes out."""
        self._ticker.remove(self)
        with self._lock:  # a look under way ends first
            self._ended = True
        self._announce_once()
        self._look(final=True)
        if self._latest is not None:
            self._send()

    def due(self, now: float) -> bool:
        return now >= self._first_look_at

    def check(self) -> None:
        """A look from the ticker's thread."""
        with self._lock:
            if self._ended:
                return
            faults.check("progress")
            self._announce_once()
            self._look(final=False)
            if self._latest is not None and time.monotonic() - self._sent_at >= self.interval_s:
                self._send()

    def _announce_once(self) -> None:
        announce, self._announce = self._announce, None
        if announce is not None:
            announce()

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


class ProgressTicker:
    """The thread that looks at the progress files of the jobs being watched: one per process,
    started with its first job. It ticks every CHECK_EVERY_S while jobs are watched and for
    IDLE_AFTER_S after, then sleeps until the next job: back-to-back jobs wake it for nothing."""

    def __init__(self) -> None:
        self.health = ThreadHealth("progress")
        self._condition = threading.Condition()
        self._watchers: list[ProgressWatcher] = []
        self._thread: threading.Thread | None = None
        self._asleep = False
        self._resume_at = 0.0  # after a failure, looks wait for the health's delay

    def add(self, watcher: ProgressWatcher) -> None:
        with self._condition:
            self._watchers.append(watcher)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
                self._thread.start()
            elif self._asleep:
                self._condition.notify()

    def remove(self, watcher: ProgressWatcher) -> None:
        with self._condition, contextlib.suppress(ValueError):
            self._watchers.remove(watcher)

    def _run(self) -> None:
        last_watched = time.monotonic()
        while True:
            with self._condition:
                if not self._watchers and time.monotonic() - last_watched >= IDLE_AFTER_S:
                    self._asleep = True
                    self._condition.wait_for(lambda: bool(self._watchers))
                    self._asleep = False
                else:
                    self._condition.wait(CHECK_EVERY_S)
                watchers = list(self._watchers)
            now = time.monotonic()
            if watchers:
                last_watched = now
            if now >= self._resume_at:
                self._look_at(watcher for watcher in watchers if watcher.due(now))

    def _look_at(self, watchers: Iterable[ProgressWatcher]) -> None:
        for watcher in watchers:
            try:
                watcher.check()
            except Exception as exc:
                self._resume_at = time.monotonic() + log_failure(self.health, exc)
                return
            self.health.succeeded()


_ticker: ProgressTicker | None = None
_ticker_lock = threading.Lock()


def _process_ticker() -> ProgressTicker:
    global _ticker  # noqa: PLW0603 (one ticker thread per process, made when first needed)
    with _ticker_lock:
        if _ticker is None:
            _ticker = ProgressTicker()
        return _ticker

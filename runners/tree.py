"""A job's whole process tree: the job and every descendant, measured and killed together."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass

import psutil

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class TreeSample:
    rss_bytes: int
    cpu_seconds: float


def _read_stat(pid: int) -> TreeSample | None:
    """RSS and CPU time (own and reaped children's) of one live process, in a single read.

    The job's own process is sampled this way because it is sampled in every sample of every
    job: one read of /proc/PID/stat instead of psutil's several.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return None
    if fields[0] == b"Z":
        return None
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return TreeSample(int(fields[21]) * _PAGE_SIZE, (utime + stime + cutime + cstime) / _TICKS_PER_SECOND)


class ProcessTree:
    """The tree rooted at `pid`, whose process group is `pid` too (the job leads its group)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._descendants: dict[int, psutil.Process] = {}

    def _discover(self) -> None:
        # Keep every descendant ever seen: one that was reparented when its parent exited
        # is still the job's and still counts (and is still killed). Finding them reads
        # every process's /proc entry: the costly part of a sample.
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self._descendants.setdefault(child.pid, child)

    def _live_descendants(self) -> list[psutil.Process]:
        alive = []
        for pid, process in list(self._descendants.items()):
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
                    continue
            except psutil.Error:
                pass
            del self._descendants[pid]
        return alive

    def sample(self) -> TreeSample:
        """Summed RSS and CPU time (including reaped children's) of the live tree."""
        root = _read_stat(self.pid)
        rss, cpu = (root.rss_bytes, root.cpu_seconds) if root else (0, 0.0)
        self._discover()
        for process in self._live_descendants():
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    times = process.cpu_times()
                    cpu += times.user + times.system + times.children_user + times.children_system
            except psutil.Error:
                continue  # exited between listing and reading
        return TreeSample(rss, cpu)

    def kill(self, signum: signal.Signals = signal.SIGKILL) -> None:
        """Signal the job's process group and every known descendant that left it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)
        for process in self._live_descendants():
            with contextlib.suppress(psutil.Error):
                process.send_signal(signum)

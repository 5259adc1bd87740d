"""A job's whole process tree: the job and every descendant, measured and killed together."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class TreeSample:
    rss_bytes: int
    cpu_seconds: float


class ProcessTree:
    """The tree rooted at `pid`, whose process group is `pid` too (the job leads its group)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._root = psutil.Process(pid)
        self._known: dict[int, psutil.Process] = {pid: self._root}

    def _members(self, *, discover: bool) -> list[psutil.Process]:
        # Keep every descendant ever seen: one that was reparented when its parent exited
        # is still the job's and still counts (and is still killed).
        if discover:
            # Finding descendants reads every process's /proc entry: the costly part.
            with contextlib.suppress(psutil.Error):
                for child in self._root.children(recursive=True):
                    self._known.setdefault(child.pid, child)
        alive = []
        for pid, process in list(self._known.items()):
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
                    continue
            except psutil.Error:
                pass
            if pid != self.pid:
                del self._known[pid]
        return alive

    def sample(self, *, discover: bool = True) -> TreeSample:
        """Summed RSS and CPU time (including reaped children's) of the live tree.

        Without `discover`, only processes already known are read: cheap, for the first
        sample of a job that may be over in a millisecond.
        """
        rss = 0
        cpu = 0.0
        for process in self._members(discover=discover):
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
        for process in self._members(discover=False):
            with contextlib.suppress(psutil.Error):
                process.send_signal(signum)

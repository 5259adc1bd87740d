"""What a running job holds in its directory, measured by walking it at a bounded cost."""

from __future__ import annotations

import os
import time
from pathlib import Path

SHORTEST_INTERVAL_S = 0.5  # between two walks of a small tree
COST_SHARE = 0.05  # of the watcher's time spent walking a large tree (the next walk waits 20 walks' time)


class DiskProbe:
    def __init__(self, root: Path, first_at: float) -> None:
        """`first_at`: when the first walk is due (monotonic)."""
        self.root = root
        self.next_due = first_at
        self.peak_bytes = 0

    def measure(self) -> int:
        """The bytes the tree holds now (allocated blocks: a sparse file counts what it uses).
        Schedules the next walk: never sooner than SHORTEST_INTERVAL_S, and so that walking a
        large tree takes at most COST_SHARE of the time."""
        began = time.monotonic()
        size = tree_bytes(self.root)
        took = time.monotonic() - began
        self.next_due = time.monotonic() + max(SHORTEST_INTERVAL_S, took / COST_SHARE)
        self.peak_bytes = max(self.peak_bytes, size)
        return size


def tree_bytes(root: Path) -> int:
    """Bytes allocated to the files below `root`, links not followed; what vanishes or cannot be
    read while it is walked counts nothing."""
    total = 0
    pending = [str(root)]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    status = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += status.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
    return total

"""Measurements of a job's whole process tree (the job and every descendant)."""

from __future__ import annotations

import psutil


def tree_rss_bytes(pid: int) -> int | None:
    """Summed resident memory of `pid` and its descendants; None once it is gone."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue  # exited between listing and reading
    return total

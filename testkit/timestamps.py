"""Timestamps as results and log lines carry them, read back by tests and benchmarks."""

from __future__ import annotations

from datetime import datetime


def epoch_seconds(timestamp: str) -> float:
    """A result's or a log line's timestamp (ISO 8601, `Z` for UTC) as epoch seconds."""
    return datetime.fromisoformat(timestamp).timestamp()

"""The monitoring part of a worker: its status file, its HTTP listener, the settings its status
page shows, and who may use the page's actions."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from common.sizes import describe_size
from config.settings import WorkerSettings
from monitoring.monitor import Monitor
from monitoring.page_actions import LOOPBACK, ActionRules
from monitoring.state import status_path
from monitoring.status_page import PageFacts, duration
from protocol.cancel import CancelMarks
from queues.base import QueueDepth


def monitor(
    settings: WorkerSettings,
    scratch_dir: Path,
    marks: CancelMarks | None,
    wake: Callable[[], None],
    backlog: Callable[[], QueueDepth | None] | None = None,
) -> Monitor:
    actions = None
    if settings.status_actions:
        actions = ActionRules(settings.status_actions_from or LOOPBACK, marks)
    try:
        return Monitor(
            status_path(scratch_dir),
            settings.metrics_address,
            settings.metrics_port,
            facts=PageFacts(_rows(settings, scratch_dir), cancel_available=marks is not None),
            actions=actions,
            wake=wake,
            backlog=backlog,
        )
    except OSError as exc:
        raise ValueError(
            f"cannot serve metrics on {settings.metrics_address}:{settings.metrics_port}: {exc.strerror or exc}"
        ) from None


def _rows(settings: WorkerSettings, scratch_dir: Path) -> tuple[tuple[str, str], ...]:
    """The settings that tell someone looking at the page what this worker is and may do."""
    limits = [
        ("timeout", _seconds(settings.job_timeout)),
        ("memory", _size(settings.job_memory)),
        ("cpus", "none" if settings.job_cpus is None else f"{settings.job_cpus:g}"),
        ("disk", _size(settings.job_disk)),
    ]
    rows = [
        ("host", socket.gethostname()),
        ("instance", settings.name),
        ("kind", settings.command_name),
        ("queue", settings.queue),
        ("result queue", settings.result_queue or "the default"),
        ("dead-letter queue", settings.dead_letter_queue or "none"),
        ("workers", str(settings.workers)),
        ("job limits", ", ".join(f"{name} {value}" for name, value in limits)),
        (
            "capacity",
            f"memory {describe_size(settings.memory_capacity)}, cpus {settings.cpu_capacity:g}, gpus {settings.gpus}",
        ),
        ("visibility timeout", _seconds(settings.visibility_timeout)),
        ("attempts", f"at most {settings.max_attempts}, {_seconds(settings.retry_delay)} apart at first"),
        ("prefetch", f"up to {settings.prefetch_max} jobs expected to start within {settings.prefetch_window:g} s"),
        ("journal", f"{settings.journal} (finished jobs kept {duration(settings.journal_retention)})"),
        ("job table", settings.job_table or "none"),
        ("scratch", str(scratch_dir)),
        ("page actions", "on" if settings.status_actions else "off (read-only)"),
    ]
    return tuple(rows)


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:g} s"


def _size(value: int | None) -> str:
    return "none" if value is None else describe_size(value)

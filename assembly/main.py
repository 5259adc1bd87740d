"""The program: read the settings, set up logging, run the command asked for, map what went
wrong to an exit status."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from assembly.kit import render_kit
from assembly.worker import serve
from client.cancel import cancel_in_table, cancel_on_local_queue
from client.fleet import print_fleet
from client.status import print_status
from client.submit import submit
from common.logs import configure_logging
from config.parser import build_parser
from config.settings import (
    CancelSettings,
    FleetSettings,
    KitSettings,
    Settings,
    StatusSettings,
    SubmitSettings,
    check_worker_settings,
    parse_settings,
)
from journal.base import JournalUnusable
from journal.fleet_table import FleetRegister
from journal.job_table import JobTable
from journal.sqlite import SqliteJournal
from monitoring.state import status_path
from protocol.cancel import CancelUnavailable
from queues import local_cancel_marks, open_queue
from queues.base import QueueError

log = logging.getLogger(__name__)
EXIT_USAGE = 2
EXIT_QUEUE_UNUSABLE = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    settings = parse_settings(sys.argv[1:] if argv is None else argv, os.environ, parser)
    configure_logging(settings.log_format, settings.log_level)
    try:
        return _run(settings)
    except ValueError as exc:
        parser.error(str(exc))
    except JournalUnusable as exc:
        log.critical(str(exc))
        return EXIT_USAGE
    except QueueError as exc:
        log.critical("the queue cannot be used", extra={"error": str(exc)})
        return EXIT_QUEUE_UNUSABLE
    except CancelUnavailable as exc:
        log.critical("cancel requests cannot be kept", extra={"error": str(exc)})
        return EXIT_QUEUE_UNUSABLE


def _run(settings: Settings) -> int:
    if isinstance(settings, SubmitSettings):
        return _submit(settings)
    if isinstance(settings, CancelSettings):
        return _cancel(settings)
    if isinstance(settings, KitSettings):
        return render_kit(settings)
    if isinstance(settings, FleetSettings):
        if settings.job_table is None:
            raise ValueError("fleet needs --job-table: the boxes register there")
        register = FleetRegister(JobTable(settings.job_table), open_queue(settings.queue).spec)
        return print_fleet(register, as_json=settings.json)
    if isinstance(settings, StatusSettings):
        return print_status(status_path(settings.scratch_dir.resolve()), as_json=settings.json)
    return serve(check_worker_settings(settings))


def _cancel(settings: CancelSettings) -> int:
    """In the job table if one is given, else in the embedded queue's file."""
    job_id, reason, wait, timeout_s = settings.job_id, settings.reason, settings.wait, settings.timeout
    if settings.job_table is not None:
        return cancel_in_table(JobTable(settings.job_table), job_id, reason, wait=wait, timeout_s=timeout_s)
    marks = local_cancel_marks(open_queue(settings.queue))
    if marks is None:
        raise ValueError("cancel needs --job-table for an SQS queue (only the embedded queue keeps cancel requests)")
    path = settings.journal.expanduser().absolute()
    journal = SqliteJournal(path, writer=False) if path.exists() else None
    return cancel_on_local_queue(marks, journal, job_id, reason, wait=wait, timeout_s=timeout_s)


def _submit(settings: SubmitSettings) -> int:
    queue = open_queue(settings.submit_queue or settings.queue, settings.large_payload_bucket)
    try:
        body = sys.stdin.read() if settings.file == "-" else Path(settings.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the job file {settings.file}: {exc}") from None
    terminal = sys.stderr if sys.stderr.isatty() else None
    return submit(queue, body, wait=settings.wait, timeout_s=settings.timeout, group=settings.group, terminal=terminal)

"""The client's subcommands: `status` (what a running worker is doing) and `submit` (enqueue a job)."""

from __future__ import annotations

import argparse

from config.help import HelpFormatter
from config.values import positive_float


def add_status_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="print what the worker using --scratch-dir is doing",
        description="Print the state of the running worker that uses --scratch-dir (from its status file): "
        "health, slots, jobs, running jobs. Exit 0 if it is healthy, 1 if it is not, 3 if it is not running.",
        formatter_class=HelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="print the state as one JSON object instead")


def add_submit_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = commands.add_parser(
        "submit",
        help="enqueue a job message from a file or stdin",
        description="Enqueue a job message. With --wait, print the job's final result and exit 0 if it succeeded "
        "(1 if it did not, 4 if no result came in time).",
        formatter_class=HelpFormatter,
    )
    submit.add_argument(
        "--queue", dest="submit_queue", default=None, help="queue to send to (default: the global --queue)"
    )
    submit.add_argument(
        "--group",
        default=None,
        metavar="ID",
        help="message group: one job of a group runs at a time, in order (a FIFO queue, default: the job's id; "
        "or the embedded queue, default: none)",
    )
    submit.add_argument("--wait", action="store_true", help="wait for the job's final result and print it")
    submit.add_argument(
        "--timeout", type=positive_float, default=None, help="seconds to wait with --wait (default: no limit)"
    )
    submit.add_argument("file", help="the job message file, or - for stdin")

"""The command line: `supervisor.py [OPTIONS] native|docker ...`, `submit ...` and `status`.

One builder per group of options and one per subcommand; every option's type, default and
help are defined here once, whichever layer (flag, environment, file) sets it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from common.durations import parse_duration
from common.logs import LOG_FORMATS
from common.sizes import parse_size
from config.capacity import add_capacity_options
from config.client_commands import (
    add_cancel_command,
    add_fleet_command,
    add_kit_command,
    add_status_command,
    add_submit_command,
)
from config.docker_command import add_docker_command
from config.fleet_options import add_fleet_options
from config.help import HelpFormatter
from config.layers import ENV_PREFIX, ReplacingAppend
from config.services import add_services_command
from config.transfer_options import add_transfer_options
from config.values import (
    duration,
    instance_name,
    network,
    non_negative_float,
    non_negative_int,
    port,
    positive_float,
    positive_int,
    size,
)
from monitoring.state import DEFAULT_STALL_LIMIT_S
from protocol.body import DEFAULT_MAX_BODY_BYTES
from protocol.cancel import DEFAULT_CANCEL_POLL_S
from queues import default_queue_spec, default_state_dir
from runners.process import DEFAULT_KILL_GRACE_S

WORKER_COMMANDS = ("native", "docker", "services")
DEFAULT_PREFETCH_WINDOW_S = 1.0
DEFAULT_PREFETCH_MAX = 20
DEFAULT_PROGRESS_INTERVAL_S = 2.0  # at most one progress event per job this often
DEFAULT_DEADLINE_MARGIN_S = 300.0  # beyond a job's limits: image pull, start-up, clean-up


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supervisor.py",
        description="api-worker: run JSON job messages from a queue in a fixed pool of child processes.",
        epilog=f"Every option of the worker (global, native, docker) can also be set by an environment variable "
        f"{ENV_PREFIX}<OPTION> (e.g. {ENV_PREFIX}JOB_MEMORY=2G; lists comma-separated) or by a key in the "
        '--config file (e.g. job-memory = "2G"); a flag beats the environment, which beats the file.',
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"TOML file of settings, keys named as the options without dashes (also {ENV_PREFIX}CONFIG)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="number of child processes, i.e. jobs run at once",
    )
    state = default_state_dir()
    _add_queue_options(parser)
    _add_storage_options(parser, state)
    _add_journal_options(parser, state)
    _add_logging_options(parser)
    _add_delivery_options(parser)
    _add_limit_options(parser)
    add_capacity_options(parser)
    _add_monitoring_options(parser)
    _add_shutdown_options(parser)
    add_fleet_options(parser)
    commands = parser.add_subparsers(
        dest="command_name",
        metavar="COMMAND",
        required=True,
        help="native, docker or services runs the worker; submit enqueues a job; cancel stops one; "
        "status shows a running worker; fleet lists the live boxes of a queue",
    )
    pass_env = _pass_env_parent()
    _add_native_command(commands, pass_env)
    add_docker_command(commands, pass_env)
    add_services_command(commands, pass_env)
    add_status_command(commands)
    add_submit_command(commands)
    add_cancel_command(commands)
    add_fleet_command(commands)
    add_kit_command(commands)
    return parser


def worker_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers whose options the config file and the environment may set (not submit's)."""
    return [parser, *(subcommand_parser(parser, name) for name in WORKER_COMMANDS)]


def subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = commands.choices[name]
    return found


def _add_queue_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        type=instance_name,
        default=None,
        help="this worker's instance name, which keys its default paths (letters, digits, '.', '_', '-'; "
        "default: the jobs queue's name and a digest of its address, so workers of different queues never "
        "share a path)",
    )
    parser.add_argument(
        "--queue",
        default=default_queue_spec(),
        help="jobs queue: local:PATH[#NAME] for the embedded queue, or an SQS queue URL",
    )
    parser.add_argument(
        "--result-queue",
        default=None,
        help="where results go (default: the embedded queue's 'results' queue; for SQS, only the log)",
    )
    parser.add_argument(
        "--dead-letter-queue",
        default=None,
        help="queue that rejected messages are moved to (default: they are deleted once answered)",
    )
    parser.add_argument(
        "--large-payload-bucket",
        default=None,
        help="S3 bucket for SQS messages over the size limit (requests are read from S3 pointers regardless), "
        "and for results too large for a --job-table item",
    )
    parser.add_argument(
        "--max-body-size",
        type=size,
        default=DEFAULT_MAX_BODY_BYTES,
        help="largest message body accepted, after an S3 pointer is resolved; larger ones are rejected",
    )


def _add_storage_options(parser: argparse.ArgumentParser, state: Path) -> None:
    parser.add_argument(
        "--scratch-dir",
        type=Path,
        default=None,
        help=f"parent of the per-job directories, locked by the worker while it runs "
        f"(default: {state}/NAME/scratch, NAME the --name)",
    )
    parser.add_argument(
        "--file-root",
        type=Path,
        action=ReplacingAppend,
        default=[],
        help="directory that file:// URIs may read and write (repeatable); none: file:// is refused",
    )
    add_transfer_options(parser, state)
    parser.add_argument(
        "--max-inline-output",
        type=size,
        default=parse_size("1M"),
        help="most bytes of a pipe-mode stdout or stderr put in the result; the rest is cut (noted in 'skipped')",
    )


def _add_journal_options(parser: argparse.ArgumentParser, state: Path) -> None:
    parser.add_argument(
        "--journal",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"file of the jobs this worker finished (SQLite), so that none runs twice; locked by the worker "
        f"while it runs (default: {state}/NAME/journal.sqlite3)",
    )
    parser.add_argument(
        "--journal-retention",
        type=duration,
        default=parse_duration("4d"),
        metavar="DURATION",
        help="how long a finished job is remembered after its result went out, e.g. 4d or 12h "
        "(at least the queue's message retention)",
    )
    parser.add_argument(
        "--dedupe",
        choices=["message-id", "job-id"],
        default="message-id",
        help="what makes a delivery a repeat of a finished job: its message id, or also the request's id "
        "(a producer resending a job under the same id gets the stored outcome)",
    )
    parser.add_argument(
        "--job-table",
        default=None,
        metavar="NAME",
        help="DynamoDB table shared by every worker of the queue: a job is claimed there before it runs, so it "
        "runs once across boxes, and cancel requests are kept there (default: none, the journal alone)",
    )
    parser.add_argument(
        "--cancel-poll",
        type=positive_float,
        default=DEFAULT_CANCEL_POLL_S,
        metavar="SECONDS",
        help="how often the worker looks up cancel requests for its running jobs (one read for all of them)",
    )


def _add_logging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="log lines as JSON objects or as text (default: text when stderr is a terminal, else json)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="lowest level logged"
    )


def _add_delivery_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--visibility-timeout",
        type=positive_float,
        default=60.0,
        help="seconds a received message stays hidden; extended while its job runs",
    )
    parser.add_argument(
        "--max-attempts",
        type=positive_int,
        default=3,
        help="attempts before a job failing with a system error is reported final",
    )
    parser.add_argument(
        "--retry-delay",
        type=positive_float,
        default=10.0,
        help="seconds before a job that hit a system error is retried; doubles each attempt",
    )
    parser.add_argument(
        "--prefetch-window",
        type=non_negative_float,
        default=DEFAULT_PREFETCH_WINDOW_S,
        help="hold received messages beyond the idle slots only as many as are expected to start within "
        "this many seconds, judged from recent job durations; 0 turns prefetch off",
    )
    parser.add_argument(
        "--prefetch-max",
        type=non_negative_int,
        default=DEFAULT_PREFETCH_MAX,
        help="most received messages held waiting for a slot; 0 turns prefetch off",
    )
    parser.add_argument(
        "--progress-interval",
        type=positive_float,
        default=DEFAULT_PROGRESS_INTERVAL_S,
        help='seconds between a job\'s progress events, at most (for requests with "events": true)',
    )


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--job-timeout",
        type=positive_float,
        default=None,
        help="wall-clock ceiling per job in seconds (default: none); a message's timeout may only ask for less",
    )
    parser.add_argument(
        "--job-memory",
        type=size,
        default=None,
        help="memory ceiling per job, e.g. 512M or 2G (default: none): native, summed over its process tree; "
        "docker, the container's limit (no swap)",
    )
    parser.add_argument(
        "--job-cpus",
        type=positive_float,
        default=None,
        help="cores per job (default: all); native jobs are pinned to that many cores, rounded up; "
        "docker jobs get that much CPU time (nano-CPUs)",
    )
    parser.add_argument(
        "--job-cpu-time",
        type=positive_float,
        default=None,
        help="CPU-seconds ceiling per job, summed over its process tree (default: none)",
    )
    parser.add_argument(
        "--job-disk",
        type=size,
        default=None,
        help="most input bytes one job may download, e.g. 20G (default: only the scratch filesystem's free space)",
    )
    parser.add_argument(
        "--transfer-timeout",
        type=positive_float,
        default=3600.0,
        help="seconds one job's whole stage-in may take, and apart its whole stage-out; over it the job ends "
        "in a retryable error naming what was in transfer (a message's transfer_timeout may only ask for less)",
    )
    parser.add_argument(
        "--deadline-margin",
        type=non_negative_float,
        default=DEFAULT_DEADLINE_MARGIN_S,
        help="seconds beyond a job's transfer timeouts, --job-timeout and --kill-grace before the supervisor "
        "kills a child still holding the job (covers image pulls, start-up, clean-up); no deadline without "
        "--job-timeout",
    )


def _add_monitoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=port,
        default=None,
        help="serve the status page (/), Prometheus /metrics, /healthz and /status on this port (default: off)",
    )
    parser.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        help="address the metrics port listens on; 0.0.0.0 for every interface",
    )
    parser.add_argument(
        "--status-actions",
        action="store_true",
        help="let the status page at / drain and resume the worker and cancel running jobs "
        "(off: the page is read-only)",
    )
    parser.add_argument(
        "--status-actions-from",
        action=ReplacingAppend,
        type=network,
        default=[],
        metavar="CIDR",
        help="client address or network whose requests may use the page's actions (repeatable); default: loopback only",
    )
    parser.add_argument(
        "--health-stall-limit",
        type=positive_float,
        default=DEFAULT_STALL_LIMIT_S,
        help="seconds the supervisor loop may go without running before /healthz and status report it stuck",
    )


def _add_shutdown_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shutdown-grace",
        type=non_negative_float,
        default=60.0,
        help="seconds running jobs may take to finish after SIGTERM before they are killed and released",
    )
    parser.add_argument(
        "--kill-grace",
        type=positive_float,
        default=DEFAULT_KILL_GRACE_S,
        help="seconds between SIGTERM and SIGKILL when a job is stopped",
    )


def _pass_env_parent() -> argparse.ArgumentParser:
    pass_env = argparse.ArgumentParser(add_help=False)
    pass_env.add_argument(
        "--pass-env",
        action=ReplacingAppend,
        default=[],
        metavar="NAME",
        help="environment variable of the worker passed on to jobs (repeatable); none by default",
    )
    return pass_env


def _add_native_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], pass_env: argparse.ArgumentParser
) -> None:
    native = commands.add_parser(
        "native",
        parents=[pass_env],
        help="run each job's arguments after a fixed command on this host",
        description="Run jobs natively: argv = CMD [ARG...] followed by the message's arguments. "
        'CMD may also be one JSON list, e.g. \'["python", "my_script.py"]\'. '
        "Jobs get PATH, LANG, LC_ALL and TZ from the worker's environment, plus --pass-env.",
        formatter_class=HelpFormatter,
    )
    native.add_argument("--service", default=None, help="the service name jobs must carry (default: accept any)")
    native.add_argument(
        "program", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]", help="the command every job runs"
    )

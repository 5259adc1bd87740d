"""The command line: `supervisor.py [OPTIONS] native|docker ...` and `supervisor.py submit ...`."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from client.status import print_status
from client.submit import submit
from common.durations import parse_duration
from common.logs import LOG_FORMATS, configure_logging
from common.sizes import parse_size
from config.layers import ENV_PREFIX, ReplacingAppend, apply_layers, config_path, read_config_file
from journal.base import JournalUnusable
from journal.sqlite import SqliteJournal
from monitoring.monitor import Monitor
from monitoring.state import DEFAULT_STALL_LIMIT_S, status_path
from pool.outcomes import OutcomePolicy
from pool.settings import ChildSettings
from pool.supervisor import Supervisor, SupervisorSettings
from protocol.body import DEFAULT_MAX_BODY_BYTES
from queues import default_queue_spec, default_result_queue, default_state_dir, open_queue
from queues.base import QueueError
from runners.container_settings import ContainerSettings, parse_user
from runners.image_policy import PULL_POLICIES, ImagePolicy
from runners.limits import JobLimits

log = logging.getLogger(__name__)
EXIT_USAGE = 2
EXIT_QUEUE_UNUSABLE = 1


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the empty ones (None, no list items): their help says what happens."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default == []:
            return action.help
        return super()._get_help_string(action)


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None


def _positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return value


def _port(text: str) -> int:
    value = int(_number(text, int))
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {value}")
    return value


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _container_user(text: str) -> tuple[int, int]:
    try:
        return parse_user(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    state = default_state_dir()
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
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="number of child processes, i.e. jobs run at once",
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
        help="S3 bucket for SQS messages over the size limit (requests are read from S3 pointers regardless)",
    )
    parser.add_argument(
        "--scratch-dir", type=Path, default=state / "scratch", help="parent of the per-job directories; one per worker"
    )
    _add_journal_options(parser, state)
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="log lines as JSON objects or as text (default: text when stderr is a terminal, else json)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="lowest level logged"
    )
    parser.add_argument(
        "--visibility-timeout",
        type=_positive_float,
        default=60.0,
        help="seconds a received message stays hidden; extended while its job runs",
    )
    parser.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=3,
        help="attempts before a job failing with a system error is reported final",
    )
    parser.add_argument(
        "--retry-delay",
        type=_positive_float,
        default=10.0,
        help="seconds before a job that hit a system error is retried; doubles each attempt",
    )
    parser.add_argument(
        "--file-root",
        type=Path,
        action=ReplacingAppend,
        default=[],
        help="directory that file:// URIs may read and write (repeatable); none: file:// is refused",
    )
    parser.add_argument(
        "--job-timeout",
        type=_positive_float,
        default=None,
        help="wall-clock ceiling per job in seconds (default: none); a message's timeout may only ask for less",
    )
    parser.add_argument(
        "--job-memory",
        type=_size,
        default=None,
        help="memory ceiling per job, e.g. 512M or 2G (default: none): native, summed over its process tree; "
        "docker, the container's limit (no swap)",
    )
    parser.add_argument(
        "--job-cpus",
        type=_positive_float,
        default=None,
        help="cores per job (default: all); native jobs are pinned to that many cores, rounded up; "
        "docker jobs get that much CPU time (nano-CPUs)",
    )
    parser.add_argument(
        "--job-cpu-time",
        type=_positive_float,
        default=None,
        help="CPU-seconds ceiling per job, summed over its process tree (default: none)",
    )
    parser.add_argument(
        "--job-disk",
        type=_size,
        default=None,
        help="most input bytes one job may download, e.g. 20G (default: only the scratch filesystem's free space)",
    )
    parser.add_argument(
        "--transfer-timeout",
        type=_positive_float,
        default=3600.0,
        help="seconds one job's whole stage-in may take, and apart its whole stage-out; over it the job ends "
        "in a retryable error naming what was in transfer (a message's transfer_timeout may only ask for less)",
    )
    parser.add_argument(
        "--deadline-margin",
        type=_non_negative_float,
        default=300.0,
        help="seconds beyond a job's transfer timeouts, --job-timeout and --kill-grace before the supervisor "
        "kills a child still holding the job (covers image pulls, start-up, clean-up); no deadline without "
        "--job-timeout",
    )
    parser.add_argument(
        "--transfer-concurrency",
        type=_positive_int,
        default=8,
        help="files one job uploads or downloads at once (large files also move in parallel parts)",
    )
    parser.add_argument(
        "--max-inline-output",
        type=_size,
        default=parse_size("1M"),
        help="most bytes of a pipe-mode stdout or stderr put in the result; the rest is cut (noted in 'skipped')",
    )
    parser.add_argument(
        "--max-body-size",
        type=_size,
        default=DEFAULT_MAX_BODY_BYTES,
        help="largest message body accepted, after an S3 pointer is resolved; larger ones are rejected",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="serve Prometheus /metrics, /healthz and /status on this port (default: off)",
    )
    parser.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        help="address the metrics port listens on; 0.0.0.0 for every interface",
    )
    parser.add_argument(
        "--health-stall-limit",
        type=_positive_float,
        default=DEFAULT_STALL_LIMIT_S,
        help="seconds the supervisor loop may go without running before /healthz and status report it stuck",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=_non_negative_float,
        default=60.0,
        help="seconds running jobs may take to finish after SIGTERM before they are killed and released",
    )
    parser.add_argument(
        "--kill-grace",
        type=_positive_float,
        default=10.0,
        help="seconds between SIGTERM and SIGKILL when a job is stopped",
    )
    commands = parser.add_subparsers(
        dest="command_name",
        metavar="COMMAND",
        required=True,
        help="native or docker runs the worker; submit enqueues a job; status shows a running worker",
    )
    pass_env = argparse.ArgumentParser(add_help=False)
    pass_env.add_argument(
        "--pass-env",
        action=ReplacingAppend,
        default=[],
        metavar="NAME",
        help="environment variable of the worker passed on to jobs (repeatable); none by default",
    )

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

    docker = commands.add_parser(
        "docker",
        parents=[pass_env],
        help="run each job in a container of the image its message names",
        description="Run jobs in Docker containers: the image is the message's service, the message's "
        "arguments are the container's command after the image's ENTRYPOINT (as `docker run IMAGE ARG...`). "
        "The engine is the one DOCKER_HOST names (default: the local socket).",
        formatter_class=HelpFormatter,
    )
    docker.add_argument(
        "--pull", choices=PULL_POLICIES, default="missing", help="when to pull a job's image from its registry"
    )
    docker.add_argument(
        "--allow-image",
        action=ReplacingAppend,
        default=[],
        metavar="PATTERN",
        help="glob of images jobs may name, e.g. 'hub.example.org/*' (repeatable; default: any image)",
    )
    docker.add_argument(
        "--container-user",
        type=_container_user,
        default=None,
        metavar="UID[:GID]",
        help="user jobs run as in their container (default: the worker's own uid:gid); "
        "the worker must run as root to hand the job directory to another user",
    )
    docker.add_argument(
        "--network", default=None, help="network of the job containers, e.g. none (default: the engine's bridge)"
    )
    docker.add_argument(
        "--pids-limit", type=_positive_int, default=1024, help="most processes and threads in one job's container"
    )

    status = commands.add_parser(
        "status",
        help="print what the worker using --scratch-dir is doing",
        description="Print the state of the running worker that uses --scratch-dir (from its status file): "
        "health, slots, jobs, running jobs. Exit 0 if it is healthy, 1 if it is not, 3 if it is not running.",
        formatter_class=HelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="print the state as one JSON object instead")

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
    submit.add_argument("--wait", action="store_true", help="wait for the job's final result and print it")
    submit.add_argument(
        "--timeout", type=_positive_float, default=None, help="seconds to wait with --wait (default: no limit)"
    )
    submit.add_argument("file", help="the job message file, or - for stdin")
    return parser


def _add_journal_options(parser: argparse.ArgumentParser, state: Path) -> None:
    parser.add_argument(
        "--journal",
        type=Path,
        default=state / "journal.sqlite3",
        metavar="PATH",
        help="file of the jobs this worker finished (SQLite), so that none runs twice; one per worker",
    )
    parser.add_argument(
        "--journal-retention",
        type=_duration,
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


def parse_program(words: Sequence[str]) -> list[str]:
    """`-- CMD ARG...` or the seed's single JSON list `'["python", "x.py"]'`."""
    words = list(words)
    if words and words[0] == "--":
        words = words[1:]
    if len(words) == 1 and words[0].lstrip().startswith("["):
        try:
            program = json.loads(words[0])
        except json.JSONDecodeError as exc:
            raise ValueError(f"the command is not a valid JSON list: {exc}") from None
        if not isinstance(program, list) or not program or not all(isinstance(w, str) for w in program):
            raise ValueError("the command's JSON form must be a non-empty list of strings")
        return program
    if not words:
        raise ValueError("native needs the command to run, e.g. native -- python my_script.py")
    return words


def resolve_executable(program: list[str]) -> list[str]:
    """Jobs run in their own directory: find the command now, as the operator meant it."""
    found = shutil.which(program[0])
    if found is None:
        raise ValueError(f"the command {program[0]!r} is not an executable file here or on PATH")
    if "/" in program[0]:
        return [os.path.abspath(program[0]), *program[1:]]
    return program


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        path = config_path(arguments, os.environ)
        apply_layers(_worker_parsers(parser), read_config_file(path) if path else {}, os.environ)
    except ValueError as exc:
        parser.error(str(exc))
    options = parser.parse_args(arguments)
    if options.log_format is None:
        options.log_format = "text" if sys.stderr.isatty() else "json"
    configure_logging(options.log_format, options.log_level)
    try:
        if options.command_name == "submit":
            return _submit(options)
        if options.command_name == "status":
            return print_status(status_path(options.scratch_dir.resolve()), as_json=options.json)
        return _serve(options)
    except ValueError as exc:
        parser.error(str(exc))
    except JournalUnusable as exc:
        log.critical(str(exc))
        return EXIT_USAGE
    except QueueError as exc:
        log.critical("the queue cannot be used", extra={"error": str(exc)})
        return EXIT_QUEUE_UNUSABLE
    return EXIT_USAGE


def _worker_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers whose options the config file and the environment may set (not submit's)."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [parser, commands.choices["native"], commands.choices["docker"]]


def _submit(options: argparse.Namespace) -> int:
    queue = open_queue(options.submit_queue or options.queue, options.large_payload_bucket)
    try:
        body = sys.stdin.read() if options.file == "-" else Path(options.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the job file {options.file}: {exc}") from None
    return submit(queue, body, wait=options.wait, timeout_s=options.timeout)


def _serve(options: argparse.Namespace) -> int:
    scratch_dir = options.scratch_dir.resolve()
    docker: ContainerSettings | None = None
    program: list[str] = []
    if options.command_name == "docker":
        docker = ContainerSettings(
            worker_label=str(scratch_dir),
            images=ImagePolicy(options.pull, tuple(options.allow_image)),
            user=options.container_user,
            network=options.network,
            pids_limit=options.pids_limit,
            pass_env=tuple(options.pass_env),
        )
        if options.container_user is not None and os.geteuid() != 0:
            raise ValueError("--container-user needs the worker to run as root (it hands each job directory over)")
        if not options.allow_image:
            log.warning("no --allow-image given: jobs may run any image", extra={"pull": options.pull})
    else:
        program = resolve_executable(parse_program(options.program))
        if options.service is None:
            log.warning("no --service given: jobs for any service name are accepted")
    bucket = options.large_payload_bucket
    job_queue = open_queue(options.queue, bucket, options.max_body_size)
    result_queue = open_queue(options.result_queue, bucket) if options.result_queue else default_result_queue(job_queue)
    dead_letter_queue = open_queue(options.dead_letter_queue, bucket) if options.dead_letter_queue else None
    journal = SqliteJournal(options.journal.expanduser().absolute())
    outcomes = OutcomePolicy(
        max_attempts=job_queue.attempts_limit(options.max_attempts),
        retry_delay_s=options.retry_delay,
        dead_letter=dead_letter_queue is not None,
    )
    if result_queue is None:
        log.info("no --result-queue given: results go to the log only")
    if not options.file_root:
        log.info("no --file-root given: file:// URIs are refused")
    child = ChildSettings(
        worker_kind=options.command_name,
        service=getattr(options, "service", None),
        base_command=tuple(program),
        scratch_dir=scratch_dir,
        queue_spec=job_queue.spec,
        supervisor_pid=os.getpid(),
        outcomes=outcomes,
        log_format=options.log_format,
        log_level=options.log_level,
        file_roots=tuple(root.absolute() for root in options.file_root),
        pass_env=tuple(options.pass_env),
        kill_grace_s=options.kill_grace,
        transfer_concurrency=options.transfer_concurrency,
        job_disk_bytes=options.job_disk,
        max_inline_output_bytes=options.max_inline_output,
        max_body_bytes=options.max_body_size,
        ceilings=JobLimits(
            timeout_s=options.job_timeout,
            memory_bytes=options.job_memory,
            cpus=options.job_cpus,
            cpu_seconds=options.job_cpu_time,
            transfer_timeout_s=options.transfer_timeout,
        ),
        docker=docker,
        journal_path=journal.path if options.dedupe == "job-id" else None,
    )
    settings = SupervisorSettings(
        workers=options.workers,
        visibility_timeout=options.visibility_timeout,
        poll_wait_s=20.0,  # long polling, for queues received from by a thread
        shutdown_grace_s=options.shutdown_grace,
        child=child,
        journal_retention_s=options.journal_retention,
        stall_limit_s=options.health_stall_limit,
        deadline_margin_s=options.deadline_margin,
    )
    # Jobs report an unusable scratch directory themselves (a mount may yet appear): not fatal here.
    with contextlib.suppress(OSError):
        scratch_dir.mkdir(parents=True, exist_ok=True)
    try:
        monitor = Monitor(status_path(scratch_dir), options.metrics_address, options.metrics_port)
    except OSError as exc:
        raise ValueError(
            f"cannot serve metrics on {options.metrics_address}:{options.metrics_port}: {exc.strerror or exc}"
        ) from None
    try:
        return Supervisor(
            settings, job_queue, result_queue, journal, dead_letter_queue=dead_letter_queue, monitor=monitor
        ).run()
    finally:
        journal.close()

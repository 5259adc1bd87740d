"""The client's subcommands: `status` (what a running worker is doing), `submit` (enqueue a job)
and `cancel` (stop one by its id)."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def add_fleet_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fleet = commands.add_parser(
        "fleet",
        help="list the live boxes of --queue, as they registered in --job-table",
        description="List the workers of --queue that registered in --job-table and renewed it lately: each box's "
        "shape (memory, CPUs, GPUs), the kinds of job it runs, and whether it drains. Exit 0.",
        formatter_class=HelpFormatter,
    )
    fleet.add_argument("--json", action="store_true", help="print them as one JSON object instead")


def add_kit_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kit = commands.add_parser(
        "kit",
        help="render the Kubernetes (KEDA) and AWS autoscaling kit from a worker's command line",
        description="Render deploy/keda (the Deployment and Service, ScaledObjects on /scaling and on the SQS queue, "
        "a ScaledJob) and deploy/aws (target tracking for an Auto Scaling group and an ECS service) from the "
        "worker's own command line, given after --. It must name an SQS --queue, --workers, --metrics-port, "
        "--metrics-address 0.0.0.0, --memory-capacity and --cpu-capacity. Prints the files written.",
        formatter_class=HelpFormatter,
    )
    kit.add_argument("--image", required=True, help="the worker's container image")
    kit.add_argument("--app", default="api-worker", help="the name of the Deployment, Service, group and ECS service")
    kit.add_argument("--namespace", default="default", help="the Kubernetes namespace")
    kit.add_argument("--max-replicas", type=int, default=20, help="the most workers (pods, tasks) the scalers start")
    kit.add_argument("--region", default=None, help="the queue's AWS region (default: the queue URL's)")
    kit.add_argument(
        "--instance-type",
        action="append",
        default=[],
        metavar="TYPE=SLOTS",
        help="an instance type of the Auto Scaling group and the slots (--workers) a box of it has: its weight",
    )
    kit.add_argument("--out", type=Path, default=Path("deploy"), help="the directory the files go under")
    kit.add_argument("worker", nargs=argparse.REMAINDER, help="-- then the worker's command line")


def add_cancel_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cancel = commands.add_parser(
        "cancel",
        help="cancel a job by its id: never run if queued, stopped if running",
        description="Ask the workers to cancel a job (its request's id, else its message id), in the --job-table "
        "if one is given, else in the embedded --queue's file. A queued job is never run; a running one is "
        "stopped within --cancel-poll (SIGTERM, --kill-grace, SIGKILL) without uploading its outputs. Either "
        "way its result is 'canceled' and its message deleted. Exit 0 once asked (with --wait: once canceled), "
        "4 if --wait saw no outcome within --timeout, 5 if the job had already finished, 6 if no queue or "
        "table knows the job.",
        formatter_class=HelpFormatter,
    )
    cancel.add_argument("job_id", metavar="JOB_ID", help="the job's id")
    cancel.add_argument("--reason", default=None, help="why, for the job's result (who asked is added)")
    cancel.add_argument("--wait", action="store_true", help="wait until the job is canceled or finished")
    cancel.add_argument(
        "--timeout", type=positive_float, default=None, help="seconds to wait with --wait (default: no limit)"
    )

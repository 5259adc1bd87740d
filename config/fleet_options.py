"""The options of a worker in a fleet: instance notices, the lifecycle hook, scale-in protection,
and the fleet's shapes (where a job too big for this box waits)."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.durations import parse_duration
from config.values import duration, non_negative_float, positive_float

NOTICE_MODES = ("auto", "on", "off")
PROTECTION_MODES = ("off", "asg", "ecs", "auto")


def add_fleet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instance-notices",
        choices=NOTICE_MODES,
        default="auto",
        help="read the EC2 instance metadata (IMDSv2) every 5 s for Spot interruption and rebalance notices; "
        "auto: only where the machine says it is EC2, or AWS_EC2_METADATA_SERVICE_ENDPOINT is set",
    )
    parser.add_argument(
        "--notice-margin",
        type=non_negative_float,
        default=20.0,
        help="seconds before a Spot interruption's time at which running jobs are stopped and released",
    )
    parser.add_argument(
        "--lifecycle-hook",
        default=None,
        metavar="NAME",
        help="the Auto Scaling termination lifecycle hook to keep and complete: on the target lifecycle state "
        "Terminated, take no new jobs, let running jobs finish, then complete the hook (CONTINUE) and exit",
    )
    parser.add_argument(
        "--lifecycle-heartbeat",
        type=positive_float,
        default=300.0,
        help="seconds between lifecycle action heartbeats while jobs finish; keep it below the hook's HeartbeatTimeout",
    )
    parser.add_argument(
        "--scale-in-protection",
        choices=PROTECTION_MODES,
        default="off",
        help="protect the box from scale-in while a job runs or waits: asg (instance protection), ecs (task "
        "protection through $ECS_AGENT_URI), auto (ecs where ECS_AGENT_URI is set, else asg on EC2)",
    )
    parser.add_argument(
        "--protect-idle-grace",
        type=non_negative_float,
        default=60.0,
        help="seconds idle before scale-in protection is lifted",
    )
    _add_shape_options(parser)


def _add_shape_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fleet-shapes",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML file of the shapes the fleet may have ([shapes.NAME] with memory, cpus, gpus, disk), also those "
        "with no box up: a job too big for this box waits for one of them (needs --job-table)",
    )
    parser.add_argument(
        "--hand-on",
        default=None,
        metavar="QUEUE",
        help="send a job too big for this box, that another shape can run, once to this queue (the bigger boxes'), "
        "instead of back to its own queue with a back-off",
    )
    parser.add_argument(
        "--max-wait-for-capacity",
        type=duration,
        default=parse_duration("1h"),
        metavar="DURATION",
        help="how long a job waits for a box of a shape that fits it, from its first pass, before it ends as error "
        "no_capacity",
    )
    parser.add_argument(
        "--exit-when-idle",
        type=positive_float,
        default=None,
        metavar="S",
        help="exit 0 once no job has run or waited here for S seconds: for a worker run as a batch job, such as "
        "a KEDA ScaledJob's pod (default: never)",
    )
    parser.add_argument(
        "--fleet-heartbeat",
        type=positive_float,
        default=20.0,
        metavar="S",
        help="seconds between this box's registrations in the job table; a box that misses 3 drops out of the fleet",
    )

"""The options of a worker in a fleet: instance notices, the lifecycle hook, scale-in protection."""

from __future__ import annotations

import argparse

from config.values import non_negative_float, positive_float

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

"""The `docker` subcommand and its options: the image policy, registry credentials, the pull bound
and the image cache."""

from __future__ import annotations

import argparse

from config.help import HelpFormatter
from config.layers import ReplacingAppend
from config.values import container_user, duration, duration_or_zero, positive_int, size
from runners.image_policy import PULL_POLICIES

DEFAULT_PULL_TIMEOUT = "10m"
DEFAULT_CACHE_HIGH = "85%"
DEFAULT_CACHE_LOW = "80%"
DEFAULT_MIN_IDLE = "10m"


def share(text: str) -> float:
    """`85%` (or `85`) as 0.85: a share of the engine's disk, above 0 and below 100%."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a share of the disk must be a percentage like 85%, not {text!r}") from None
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"a share of the disk must be above 0% and below 100%, not {text!r}")
    return value / 100


def add_docker_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], pass_env: argparse.ArgumentParser
) -> None:
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
        type=container_user,
        default=None,
        metavar="UID[:GID]",
        help="user jobs run as in their container (default: the worker's own uid:gid); "
        "the worker must run as root to hand the job directory to another user",
    )
    docker.add_argument(
        "--network", default=None, help="network of the job containers, e.g. none (default: the engine's bridge)"
    )
    docker.add_argument(
        "--pids-limit", type=positive_int, default=1024, help="most processes and threads in one job's container"
    )
    _add_pull_options(docker)
    _add_cache_options(docker)


def _add_pull_options(docker: argparse.ArgumentParser) -> None:
    docker.add_argument(
        "--ecr-registry",
        action=ReplacingAppend,
        default=[],
        metavar="HOST",
        help="a registry to get ECR tokens for (repeatable); ACCOUNT.dkr.ecr.REGION.amazonaws.com hosts are ECR "
        "without it. Tokens come from the ECR API with the worker's AWS credentials; other registries' "
        "credentials from the Docker config (DOCKER_CONFIG or ~/.docker/config.json), read again when it changes",
    )
    docker.add_argument(
        "--pull-timeout",
        type=duration,
        default=duration(DEFAULT_PULL_TIMEOUT),
        metavar="DURATION",
        help="longest one image pull may take, in seconds or e.g. 10m; over it the job ends in a retryable error",
    )


def _add_cache_options(docker: argparse.ArgumentParser) -> None:
    docker.add_argument(
        "--image-cache-high",
        type=share,
        default=share(DEFAULT_CACHE_HIGH),
        metavar="PERCENT",
        help="when the engine's data-root filesystem is more used than this, the images this worker pulled are "
        "removed, least recently used first (a percentage, e.g. 85%%; shown below as a share)",
    )
    docker.add_argument(
        "--image-cache-low",
        type=share,
        default=share(DEFAULT_CACHE_LOW),
        metavar="PERCENT",
        help="...until it is this used or less (a percentage, e.g. 80%%)",
    )
    docker.add_argument(
        "--image-cache-max",
        type=size,
        default=None,
        metavar="SIZE",
        help="most the images this worker pulled may take together, e.g. 20G (default: no cap)",
    )
    docker.add_argument(
        "--keep-image",
        action=ReplacingAppend,
        default=[],
        metavar="PATTERN",
        help="glob of images never removed, e.g. 'hub.example.org/base/*' (repeatable)",
    )
    docker.add_argument(
        "--image-min-idle",
        type=duration_or_zero,
        default=duration(DEFAULT_MIN_IDLE),
        metavar="DURATION",
        help="an image used by a job this recently (seconds, or e.g. 10m) is never removed",
    )
    docker.add_argument(
        "--remove-unpulled-images",
        action="store_true",
        help="let the cache also remove images this worker's jobs used but it did not pull itself",
    )

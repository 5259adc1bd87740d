"""What the kit needs to know of the worker it deploys (read from its settings by the
composition root), and how it names and places what it renders."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KitOptions:
    """How the kit names and places what it renders."""

    app: str  # the Deployment, its Service, the Auto Scaling group and the ECS service
    namespace: str
    image: str
    max_replicas: int
    instance_types: tuple[tuple[str, int], ...]  # (type, its slots): the Auto Scaling group's weights


@dataclass(frozen=True)
class WorkerFacts:
    argv: tuple[str, ...]  # the worker's command line, as the container runs it
    queue_url: str
    queue_name: str
    region: str
    slots: int
    metrics_port: int
    grace_s: int  # how long the worker may take to leave after SIGTERM
    memory_bytes: int
    cpus: float
    exit_when_idle_s: float | None

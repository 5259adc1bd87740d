"""The fleet watch, built from the settings: where the instance metadata is (if anywhere),
which notices to read, the lifecycle hook, and which scale-in protection to keep; and the
fleet's shapes: this box's registration and where a job too big for it goes."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from config.settings import WorkerSettings
from fleet.autoscaling import InstanceAutoScaling
from fleet.ec2 import on_ec2
from fleet.ecs_protection import TaskProtection, protection_minutes
from fleet.metadata import DEFAULT_ENDPOINT, InstanceMetadata, endpoint_from, metadata_disabled
from fleet.shapes import LiveBox, Shape, largest_job, read_shapes_file
from journal.fleet_table import FleetRegister, WaitMarks
from pool.child_settings import ChildSettings
from pool.holding.passing_on import PassingOn, PassingOnSettings
from pool.outcomes import OutcomePolicy
from pool.settling.ledger import Ledger
from pool.settling.outbox import Outbox
from pool.upkeep.fleet_shapes import FleetShapes
from pool.upkeep.fleet_watch import FleetOptions, FleetWatch
from pool.upkeep.scale_in import GroupProtector, Protector, ScaleInProtection, TaskProtector
from queues import open_queue
from queues.base import JobQueue

log = logging.getLogger(__name__)
ECS_AGENT_VARIABLE = "ECS_AGENT_URI"
DEFAULT_PROTECTION_S = 3600.0  # an ECS protection's life without a job timeout; renewed at half of it


def fleet_watch(
    settings: WorkerSettings, busy: Callable[[], bool], environ: Mapping[str, str] = os.environ
) -> FleetWatch | None:
    """None when the worker has nothing to do with a fleet (ValueError: a setting needs what
    this machine does not have)."""
    metadata = _metadata(settings.instance_notices, environ)
    notices = settings.instance_notices != "off" and metadata is not None
    if settings.lifecycle_hook and metadata is None:
        raise ValueError(
            "--lifecycle-hook needs the instance metadata, and this machine does not say it is EC2: "
            "set AWS_EC2_METADATA_SERVICE_ENDPOINT, or --instance-notices on"
        )
    autoscaling = InstanceAutoScaling(metadata)
    protector = _protector(settings, metadata is not None, autoscaling, environ)
    protection = None if protector is None else ScaleInProtection(protector, settings.protect_idle_grace)
    if not notices and not settings.lifecycle_hook and protection is None:
        return None
    options = FleetOptions(
        metadata=metadata,
        autoscaling=autoscaling,
        notices=notices,
        lifecycle_hook=settings.lifecycle_hook,
        heartbeat_s=settings.lifecycle_heartbeat,
        protection=protection,
    )
    log.info(
        "fleet watch on",
        extra={
            "notices": notices,
            "lifecycle_hook": settings.lifecycle_hook,
            "scale_in_protection": None if protector is None else protector.kind,
        },
    )
    return FleetWatch(options, busy)


def _metadata(mode: str, environ: Mapping[str, str]) -> InstanceMetadata | None:
    """The metadata service, where it may be asked: never off EC2 unless the environment or
    `--instance-notices on` says so."""
    if metadata_disabled(environ):
        return None
    named = endpoint_from(environ)
    if named is not None:
        return InstanceMetadata(named)
    if mode == "on" or on_ec2():
        return InstanceMetadata(DEFAULT_ENDPOINT)
    return None


def _protector(
    settings: WorkerSettings, has_metadata: bool, autoscaling: InstanceAutoScaling, environ: Mapping[str, str]
) -> Protector | None:
    mode = settings.scale_in_protection
    agent = environ.get(ECS_AGENT_VARIABLE, "").strip()
    if mode == "auto":
        mode = "ecs" if agent else "asg" if has_metadata else "off"
    if mode == "ecs":
        if not agent:
            raise ValueError(f"--scale-in-protection ecs needs the ECS agent's endpoint in ${ECS_AGENT_VARIABLE}")
        minutes = protection_minutes(settings.job_timeout or DEFAULT_PROTECTION_S)
        return TaskProtector(TaskProtection(agent), minutes)
    if mode == "asg":
        if not has_metadata:
            raise ValueError(
                "--scale-in-protection asg needs the instance metadata (for this instance's id), and this machine "
                "does not say it is EC2: set AWS_EC2_METADATA_SERVICE_ENDPOINT, or --instance-notices on"
            )
        return GroupProtector(autoscaling)
    return None


@dataclass(frozen=True)
class Placement:
    """The fleet's shapes as this worker keeps them, and the part that passes on what it
    can never run."""

    shapes: FleetShapes | None  # registered in the job table, when there is one
    passing_on: PassingOn | None


NO_PLACEMENT = Placement(None, None)


def placement(
    settings: WorkerSettings,
    child: ChildSettings,
    parts: PlacementParts,
) -> Placement:
    """With a job table, this box registers its shape there, and a job it can never run waits
    for a shape that fits (a live box's, or one --fleet-shapes declares); without, the job is
    rejected as before (ValueError: the shapes file is wrong)."""
    table = child.gate.table
    if table is None:
        return NO_PLACEMENT
    declared = tuple(read_shapes_file(settings.fleet_shapes)) if settings.fleet_shapes else ()
    capacity = child.capacity
    ceilings = [service.ceilings for service in child.native] + ([child.ceilings] if child.docker else [])
    here = largest_job(capacity.memory_bytes, capacity.cpus, len(capacity.gpus), ceilings)
    this_box = _this_box(settings.name, child, here)
    register = FleetRegister(table, parts.queue.spec)
    shapes = FleetShapes(register, this_box, heartbeat_s=settings.fleet_heartbeat, draining=parts.draining)
    hand_on = open_queue(settings.hand_on, settings.large_payload_bucket) if settings.hand_on else None
    passing_on = PassingOn(
        PassingOnSettings(here, declared, hand_on, settings.max_wait_for_capacity),
        queue=parts.queue,
        outbox=parts.outbox,
        ledger=parts.ledger,
        policy=parts.policy,
        marks=WaitMarks(table),
        others=shapes.others,
    )
    log.info(
        "fleet shapes on",
        extra={
            "box": this_box.box_id,
            "shape": here.name,
            "declared": [s.name for s in declared],
            "hand_on": settings.hand_on,
        },
    )
    return Placement(shapes, passing_on)


def _this_box(name: str, child: ChildSettings, shape: Shape) -> LiveBox:
    """This worker's registration: its expiry and draining are set at each heartbeat."""
    queues = tuple(kind for kind, serves in (("native", bool(child.native)), ("docker", child.docker)) if serves)
    return LiveBox(
        box_id=f"{socket.gethostname()}/{name}/{os.getpid()}",
        shape=shape,
        queues=queues,
        services=tuple(service.name for service in child.native if service.name is not None),
        draining=False,
        expires_at=0.0,
    )


@dataclass(frozen=True)
class PlacementParts:
    queue: JobQueue
    outbox: Outbox
    ledger: Ledger
    policy: OutcomePolicy
    draining: Callable[[], bool]  # whether the worker takes no new jobs

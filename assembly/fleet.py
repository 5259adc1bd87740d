"""The fleet watch, built from the settings: where the instance metadata is (if anywhere),
which notices to read, the lifecycle hook, and which scale-in protection to keep."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from config.settings import WorkerSettings
from fleet.autoscaling import InstanceAutoScaling
from fleet.ec2 import on_ec2
from fleet.ecs_protection import TaskProtection, protection_minutes
from fleet.metadata import DEFAULT_ENDPOINT, InstanceMetadata, endpoint_from, metadata_disabled
from pool.upkeep.fleet_watch import FleetOptions, FleetWatch
from pool.upkeep.scale_in import GroupProtector, Protector, ScaleInProtection, TaskProtector

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

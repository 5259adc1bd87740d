"""`supervisor.py kit`: render the deployment kit from a worker's command line, read with the
worker's own parser, with a clear error for a worker the kit's probes and scalers could not
reach."""

from __future__ import annotations

import ipaddress
import math
import re
import shlex
import sys
from typing import TextIO

from config.settings import KitSettings, WorkerSettings, parse_settings
from kit.files import kit_files, write_kit
from kit.worker_facts import KitOptions, WorkerFacts
from pool.departure import OUTBOX_DRAIN_TIMEOUT_S


def render_kit(settings: KitSettings, out: TextIO = sys.stdout) -> int:
    """Write the kit's files; ValueError naming what the worker's command line lacks."""
    argv = list(settings.worker[1:] if settings.worker[:1] == ("--",) else settings.worker)
    if not argv:
        raise ValueError("kit: give the worker's command line after --, e.g. -- --queue URL --workers 4 ... native ...")
    worker_settings = parse_settings(argv, {})  # the worker's own parser: exits naming a bad option
    if not isinstance(worker_settings, WorkerSettings):
        raise ValueError("kit: the command line after -- must run a worker (native, docker or services)")
    kit = KitOptions(
        app=settings.app,
        namespace=settings.namespace,
        image=settings.image,
        max_replicas=settings.max_replicas,
        instance_types=_instance_types(settings.instance_type),
    )
    worker = worker_facts(argv, worker_settings, settings.region)
    command = shlex.join(["supervisor.py", "kit", *_kit_arguments(settings), "--", *argv])
    for path in write_kit(settings.out, kit_files(kit, worker, command)):
        print(path, file=out)
    return 0


def _kit_arguments(settings: KitSettings) -> list[str]:
    found = ["--image", settings.image, "--app", settings.app, "--namespace", settings.namespace]
    found += ["--max-replicas", str(settings.max_replicas)]
    found += ["--region", settings.region] if settings.region else []
    for kind in settings.instance_type:
        found += ["--instance-type", kind]
    return found


def _instance_types(given: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    found = []
    for text in given:
        kind, _, slots = text.partition("=")
        if not kind or not slots.isdigit() or int(slots) < 1:
            raise ValueError(f"kit: --instance-type {text!r} must be TYPE=SLOTS, e.g. m7i.xlarge=4")
        found.append((kind, int(slots)))
    return tuple(found)


_SQS_URL = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(\d+)/([A-Za-z0-9_-]{1,80}(?:\.fifo)?)$")


def worker_facts(argv: list[str], settings: WorkerSettings, region: str | None) -> WorkerFacts:
    """ValueError naming what the kit needs and the worker's command line lacks."""
    match = _SQS_URL.match(settings.queue)
    if match is None:
        raise ValueError(
            f"kit: --queue {settings.queue!r} must be an SQS queue URL "
            "(https://sqs.REGION.amazonaws.com/ACCOUNT/NAME): the scalers read its depth"
        )
    given = {token.split("=")[0] for token in argv}
    for needed in ("--memory-capacity", "--cpu-capacity"):
        if needed not in given:
            raise ValueError(f"kit: give the worker {needed}: the pod asks for the capacity its jobs may take")
    if settings.metrics_port is None:
        raise ValueError("kit: the worker needs --metrics-port: the probes read /healthz and KEDA reads /scaling")
    if ipaddress.ip_address(settings.metrics_address).is_loopback:
        raise ValueError("kit: the worker needs --metrics-address 0.0.0.0: the kubelet and KEDA reach it from outside")
    # SIGTERM: running jobs get the shutdown grace, then the kill grace, then results and deletes go out.
    grace_s = math.ceil(settings.shutdown_grace + settings.kill_grace + OUTBOX_DRAIN_TIMEOUT_S)
    return WorkerFacts(
        argv=tuple(argv),
        queue_url=settings.queue,
        queue_name=match.group(3),
        region=region or match.group(1),
        slots=settings.workers,
        metrics_port=settings.metrics_port,
        grace_s=grace_s,
        memory_bytes=settings.memory_capacity,
        cpus=settings.cpu_capacity,
        exit_when_idle_s=settings.exit_when_idle,
    )

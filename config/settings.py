"""The program's settings: the command line over the environment over the config file, read into
frozen, typed settings for the subcommand asked for, and checked as a whole before anything is
built from them."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from common.sizes import human_size
from config.capacity import DiskReserve, default_cpu_capacity, default_memory_capacity
from config.layers import apply_layers, config_path, read_config_file
from config.parser import build_parser, subcommand_parser, worker_parsers
from config.program import parse_program, resolve_executable
from config.services import ServiceSettings, read_docker_table, read_services, split_tables
from queues import default_instance_name, default_state_dir

log = logging.getLogger(__name__)
T = TypeVar("T")


class SettingsError(ValueError):
    """The settings cannot work together; the message names the option."""


@dataclass(frozen=True)
class NativeSettings:
    program: tuple[str, ...]  # as given; `check_worker_settings` finds it on this host
    service: str | None


@dataclass(frozen=True)
class DockerSettings:
    pull: str
    allow_image: tuple[str, ...]
    container_user: tuple[int, int] | None
    network: str | None
    pids_limit: int
    ecr_registry: tuple[str, ...]
    pull_timeout: float
    image_cache_high: float
    image_cache_low: float
    image_cache_max: int | None
    keep_image: tuple[str, ...]
    image_min_idle: float
    remove_unpulled_images: bool


@dataclass(frozen=True)
class WorkerSettings:
    """`native` and `docker`: every option of the worker, named as its flag."""

    command_name: str
    name: str  # the instance: keys the default paths, named in results
    log_format: str
    log_level: str
    workers: int
    queue: str
    result_queue: str | None
    dead_letter_queue: str | None
    large_payload_bucket: str | None
    max_body_size: int
    scratch_dir: Path
    file_root: tuple[Path, ...]
    transfer_concurrency: int
    input_cache_size: int  # 0: off
    input_cache_dir: Path
    max_inline_output: int
    journal: Path
    journal_retention: float
    dedupe: str
    job_table: str | None
    cancel_poll: float
    visibility_timeout: float
    max_attempts: int
    retry_delay: float
    prefetch_window: float
    prefetch_max: int
    progress_interval: float
    job_timeout: float | None
    job_memory: int | None
    job_cpus: float | None
    job_cpu_time: float | None
    job_disk: int | None
    memory_capacity: int  # what the running jobs' memory reservations may add up to
    disk_reserve: DiskReserve | None  # None: the default share of the scratch filesystem
    cpu_capacity: float
    gpus: str  # auto, none, or device UUIDs, comma-separated
    transfer_timeout: float
    deadline_margin: float
    metrics_port: int | None
    metrics_address: str
    status_actions: bool  # the status page may drain, resume and cancel
    status_actions_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]  # empty: loopback only
    health_stall_limit: float
    shutdown_grace: float
    kill_grace: float
    instance_notices: str  # auto, on or off
    notice_margin: float
    lifecycle_hook: str | None
    lifecycle_heartbeat: float
    scale_in_protection: str  # off, asg, ecs or auto
    protect_idle_grace: float
    fleet_shapes: Path | None  # declared shapes (TOML)
    hand_on: str | None  # the queue a job for another shape is handed on to
    max_wait_for_capacity: float
    fleet_heartbeat: float
    exit_when_idle: float | None
    pass_env: tuple[str, ...]
    native: NativeSettings | None
    docker: DockerSettings | None
    services: tuple[ServiceSettings, ...]  # `services`: the native services of the config file


@dataclass(frozen=True)
class SubmitSettings:
    log_format: str
    log_level: str
    queue: str
    large_payload_bucket: str | None
    submit_queue: str | None
    group: str | None
    wait: bool
    timeout: float | None
    file: str


@dataclass(frozen=True)
class StatusSettings:
    log_format: str
    log_level: str
    name: str
    scratch_dir: Path
    json: bool


@dataclass(frozen=True)
class CancelSettings:
    log_format: str
    log_level: str
    queue: str
    job_table: str | None
    journal: Path  # the worker's, which says whether a job of the embedded queue finished
    job_id: str
    reason: str | None
    wait: bool
    timeout: float | None


@dataclass(frozen=True)
class FleetSettings:
    log_format: str
    log_level: str
    queue: str
    job_table: str | None
    json: bool


@dataclass(frozen=True)
class KitSettings:
    log_format: str
    log_level: str
    image: str
    app: str
    namespace: str
    max_replicas: int
    region: str | None
    instance_type: tuple[str, ...]
    out: Path
    worker: tuple[str, ...]  # the worker's command line, after --


ClientSettings = SubmitSettings | StatusSettings | CancelSettings | FleetSettings | KitSettings
_CLIENT_COMMANDS: dict[str, type[ClientSettings]] = {
    "submit": SubmitSettings,
    "status": StatusSettings,
    "cancel": CancelSettings,
    "fleet": FleetSettings,
    "kit": KitSettings,
}
Settings = WorkerSettings | SubmitSettings | StatusSettings | CancelSettings | FleetSettings | KitSettings


def parse_settings(
    argv: Sequence[str], environ: Mapping[str, str], parser: argparse.ArgumentParser | None = None
) -> Settings:
    """Every setting, from all layers; exits with a usage message (status 2) on a bad value."""
    parser = parser or build_parser()
    try:
        path = config_path(argv, environ)
        file_settings, tables = split_tables(read_config_file(path) if path else {})
        apply_layers(worker_parsers(parser), file_settings, environ)
    except ValueError as exc:
        parser.error(str(exc))
    namespace = parser.parse_args(list(argv))
    if namespace.log_format is None:
        namespace.log_format = "text" if sys.stderr.isatty() else "json"
    try:
        return typed_settings(namespace, tables, parser)
    except ValueError as exc:
        parser.error(str(exc))


def typed_settings(
    namespace: argparse.Namespace,
    tables: Mapping[str, Any] | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> Settings:
    """The parsed command line as the settings of its subcommand; `tables`: the config file's
    [services.*] and [docker] tables, for `services`."""
    client = _CLIENT_COMMANDS.get(namespace.command_name)
    if client is not None:
        return _read(client, namespace, **_instance_paths(namespace))
    paths = _instance_paths(namespace)
    if namespace.command_name == "services":
        return _services_settings(namespace, tables or {}, parser or build_parser(), paths)
    native = _read(NativeSettings, namespace) if namespace.command_name == "native" else None
    docker = _read(DockerSettings, namespace) if namespace.command_name == "docker" else None
    return _read(WorkerSettings, namespace, native=native, docker=docker, services=(), **paths, **_capacity(namespace))


def _services_settings(
    namespace: argparse.Namespace, tables: Mapping[str, Any], parser: argparse.ArgumentParser, paths: dict[str, Any]
) -> WorkerSettings:
    services = read_services(tables)
    docker_values = read_docker_table(tables, subcommand_parser(parser, "docker"))
    if not services and docker_values is None:
        raise SettingsError("services needs a --config file with [services.NAME] tables or a [docker] table")
    docker = None if docker_values is None else _read(DockerSettings, argparse.Namespace(**docker_values))
    return _read(
        WorkerSettings, namespace, native=None, docker=docker, services=services, **paths, **_capacity(namespace)
    )


def _capacity(namespace: argparse.Namespace) -> dict[str, Any]:
    return {
        "memory_capacity": namespace.memory_capacity or default_memory_capacity(),
        "cpu_capacity": namespace.cpu_capacity or default_cpu_capacity(),
    }


def _instance_paths(namespace: argparse.Namespace) -> dict[str, Any]:
    """The instance name, and the per-worker paths not given, below the state directory in a
    folder of the instance's own: two workers of different queues never share one."""
    name = namespace.name or default_instance_name(namespace.queue)
    home = default_state_dir() / name
    return {
        "name": name,
        "scratch_dir": namespace.scratch_dir or home / "scratch",
        "journal": namespace.journal or home / "journal.sqlite3",
        "input_cache_dir": namespace.input_cache_dir or default_state_dir() / "input-cache",
    }


def _read(kind: type[T], namespace: argparse.Namespace, **given: Any) -> T:
    """The fields of `kind` from the namespace's attributes of the same names (lists as tuples)."""
    values = {name: value for name, value in given.items() if name in _field_names(kind)}
    for field in dataclasses.fields(kind):  # type: ignore[arg-type]
        if field.name not in values:
            value = getattr(namespace, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return kind(**values)


def _field_names(kind: type[Any]) -> set[str]:
    return {field.name for field in dataclasses.fields(kind)}


def check_worker_settings(settings: WorkerSettings) -> WorkerSettings:
    """What only the whole set can tell, for `native` and `docker`; SettingsError if wrong.
    Returns the settings with the native command as found on this host; changes nothing."""
    if settings.docker is not None:
        if settings.docker.container_user is not None and os.geteuid() != 0:
            raise SettingsError("--container-user needs the worker to run as root (it hands each job directory over)")
        if settings.docker.image_cache_low >= settings.docker.image_cache_high:
            raise SettingsError("--image-cache-low must be below --image-cache-high")
        if not settings.docker.allow_image:
            log.warning("no --allow-image given: jobs may run any image", extra={"pull": settings.docker.pull})
    if settings.native is not None:
        program = tuple(resolve_executable(parse_program(settings.native.program)))
        if settings.native.service is None:
            log.warning("no --service given: jobs for any service name are accepted")
        settings = dataclasses.replace(settings, native=dataclasses.replace(settings.native, program=program))
    if settings.services:
        found = tuple(
            dataclasses.replace(service, command=tuple(resolve_executable(list(service.command))))
            for service in settings.services
        )
        settings = dataclasses.replace(settings, services=found)
    _check_capacity(settings)
    if (settings.fleet_shapes or settings.hand_on) and not settings.job_table:
        raise SettingsError("--fleet-shapes and --hand-on need --job-table: a job's wait for a shape is kept there")
    if not settings.file_root:
        log.info("no --file-root given: file:// URIs are refused")
    return settings


def _check_capacity(settings: WorkerSettings) -> None:
    """A ceiling no job could ever be admitted under is a configuration error."""
    memory = [("--job-memory", settings.job_memory)]
    memory += [(f"[services.{s.name}] memory", s.memory) for s in settings.services]
    for name, ceiling in memory:
        if ceiling is not None and ceiling > settings.memory_capacity:
            raise SettingsError(
                f"{name} of {human_size(ceiling)} is more than --memory-capacity of "
                f"{human_size(settings.memory_capacity)}: no job could start"
            )
    cpus = [("--job-cpus", settings.job_cpus)] + [(f"[services.{s.name}] cpus", s.cpus) for s in settings.services]
    for name, cores in cpus:
        if cores is not None and cores > settings.cpu_capacity:
            raise SettingsError(
                f"{name} of {cores:g} is more than --cpu-capacity of {settings.cpu_capacity:g}: no job could start"
            )

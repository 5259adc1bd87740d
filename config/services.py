"""The `services` subcommand: one worker, one pool, every service its config file lists.

```toml
[services.gdal]
command = ["gdal_translate"]
timeout = "2h"      # this service's ceilings; the worker's apply where it sets none
memory = "8G"
cpus = 2
cpu-time = "4h"
max-running = 2     # at most this many of its jobs at once

[docker]            # docker jobs too, with the docker subcommand's options
allow-image = ["hub.example.org/*"]
```
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from config.help import HelpFormatter
from config.layers import from_file, setting_name
from config.values import duration, positive_float, positive_int, size

SERVICES_TABLE = "services"
DOCKER_TABLE = "docker"
_LIMITS: dict[str, Callable[[str], Any]] = {
    "timeout": duration,
    "memory": size,
    "cpus": positive_float,
    "cpu-time": duration,
    "max-running": positive_int,
}


@dataclass(frozen=True)
class ServiceSettings:
    """One native service: its command, and its own ceilings (None: the worker's)."""

    name: str
    command: tuple[str, ...]
    timeout: float | None = None
    memory: int | None = None
    cpus: float | None = None
    cpu_time: float | None = None
    max_running: int | None = None


def add_services_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], pass_env: argparse.ArgumentParser
) -> None:
    commands.add_parser(
        "services",
        parents=[pass_env],
        help="run the native services (and docker jobs) the --config file lists, from one pool",
        description="Serve every [services.NAME] table of the --config file (command, and optionally timeout, "
        "memory, cpus, cpu-time, max-running), and docker jobs when the file has a [docker] table (the docker "
        "command's options). A native message runs the command of the service it names.",
        formatter_class=HelpFormatter,
    )


def split_tables(file_settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The file's plain settings, and its [services.*] and [docker] tables."""
    tables = {name: file_settings[name] for name in (SERVICES_TABLE, DOCKER_TABLE) if name in file_settings}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ValueError(f"config key {name!r}: must be a table ([{name}])")
    return {key: value for key, value in file_settings.items() if key not in tables}, tables


def read_services(tables: Mapping[str, Any]) -> tuple[ServiceSettings, ...]:
    return tuple(_service(name, table) for name, table in tables.get(SERVICES_TABLE, {}).items())


def read_docker_table(tables: Mapping[str, Any], docker: argparse.ArgumentParser) -> dict[str, Any] | None:
    """The [docker] table as the docker command's settings (by their dests, defaults filled in);
    None without one."""
    table = tables.get(DOCKER_TABLE)
    if table is None:
        return None
    actions = {name: action for action in docker._actions if (name := setting_name(action)) is not None}
    unknown = sorted(set(table) - set(actions))
    if unknown:
        raise ValueError(f"unknown settings in the config file's [docker] table: {', '.join(unknown)}")
    values = {action.dest: action.default for action in actions.values()}
    for name, value in table.items():
        values[actions[name].dest] = from_file(actions[name], f"docker.{name}", value)
    return values


def _service(name: str, table: Any) -> ServiceSettings:
    where = f"[services.{name}]"
    if not isinstance(table, dict):
        raise ValueError(f"config {where}: must be a table")
    if not name or "\0" in name or len(name) > 1024:
        raise ValueError(f"config {where}: a service name is 1 to 1024 characters, without NUL")
    unknown = sorted(set(table) - {"command", *_LIMITS})
    if unknown:
        raise ValueError(f"config {where}: unknown settings {', '.join(unknown)}")
    command = table.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(w, str) and w for w in command):
        raise ValueError(f'config {where} command: must be a non-empty list of words, e.g. ["wc", "-l"]')
    limits = {key.replace("-", "_"): _limit(where, key, table[key]) for key in _LIMITS if key in table}
    return ServiceSettings(name, tuple(command), **limits)


def _limit(where: str, key: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"config {where} {key}: must be a string or a number, not {value!r}")
    try:
        return _LIMITS[key](str(value))
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise ValueError(f"config {where} {key}: {exc}") from None

"""The worker's settings: the command line over the environment over the config file,
checked as a whole before anything is built from them."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from config.layers import apply_layers, config_path, read_config_file
from config.parser import build_parser, worker_parsers
from config.program import parse_program, resolve_executable

log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """The settings cannot work together; the message names the option."""


def parse_settings(
    argv: Sequence[str], environ: Mapping[str, str], parser: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    """Every setting, from all layers; exits with a usage message (status 2) on a bad value."""
    parser = parser or build_parser()
    try:
        path = config_path(argv, environ)
        apply_layers(worker_parsers(parser), read_config_file(path) if path else {}, environ)
    except ValueError as exc:
        parser.error(str(exc))
    settings = parser.parse_args(list(argv))
    if settings.log_format is None:
        settings.log_format = "text" if sys.stderr.isatty() else "json"
    return settings


def check_worker_settings(settings: argparse.Namespace) -> None:
    """What only the whole set can tell, for `native` and `docker`; SettingsError if wrong.
    Sets `settings.program` to the native command found on this host."""
    if settings.command_name == "docker":
        if settings.container_user is not None and os.geteuid() != 0:
            raise SettingsError("--container-user needs the worker to run as root (it hands each job directory over)")
        if not settings.allow_image:
            log.warning("no --allow-image given: jobs may run any image", extra={"pull": settings.pull})
        settings.program = []
    else:
        settings.program = resolve_executable(parse_program(settings.program))
        if settings.service is None:
            log.warning("no --service given: jobs for any service name are accepted")
    if not settings.file_root:
        log.info("no --file-root given: file:// URIs are refused")

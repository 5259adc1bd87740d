"""Start-up: clear away what a previous run of this worker left behind."""

from __future__ import annotations

import logging

from pool.child_settings import ChildSettings
from runners.container_settings import WORKER_LABEL
from runners.process import RunnerFault
from staging.workspace import remove_stale_workspaces

log = logging.getLogger(__name__)


def clean_up_previous_run(settings: ChildSettings) -> None:
    """Job directories, and for a docker worker its containers (found by their worker label).
    An engine that is down now is not fatal: jobs fail with a retryable error until it is back."""
    remove_stale_workspaces(settings.scratch_dir)
    if settings.docker is None:
        return
    from runners.container import connect, engine_errors, remove_containers  # noqa: PLC0415 (docker workers only)

    try:
        with engine_errors("listing containers"):
            count = remove_containers(connect(), {WORKER_LABEL: settings.docker.worker_label})
    except RunnerFault as exc:
        log.error("the Docker engine cannot be reached; jobs will fail until it can", extra={"error": str(exc)})
        return
    if count:
        log.info("removed containers left by a previous run", extra={"count": count})

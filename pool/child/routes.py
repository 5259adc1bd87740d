"""Which runner, command and ceilings a request gets on this worker, or why it is not for it."""

from __future__ import annotations

from dataclasses import dataclass

from pool.child_settings import ChildSettings, NativeService
from protocol.request import JobRequest, RequestRejected
from runners.limits import JobLimits
from runners.process import Runner


@dataclass(frozen=True)
class Route:
    runner: Runner
    command: tuple[str, ...]  # the native service's command, the message's arguments after it
    ceilings: JobLimits  # the most the job may ask for
    service: str | None  # the configured service it runs as (None: a docker job, or any service name)


class Runners:
    """The runners a child has: native where it serves native services, docker where it runs
    docker jobs."""

    def __init__(self, native: Runner | None, docker: Runner | None) -> None:
        self.native = native
        self.docker = docker

    def recover(self) -> None:
        for runner in (self.native, self.docker):
            if runner is not None:
                runner.recover()


def route(settings: ChildSettings, runners: Runners, request: JobRequest) -> Route:
    """RequestRejected naming the field when the request is not for this worker."""
    if request.queue == "docker":
        if runners.docker is None:
            raise RequestRejected("queue", _not_ours(settings, "docker"))
        # A docker job's service is the image to run; the runner checks it against the image policy.
        return Route(runners.docker, (), settings.ceilings, None)
    service = _native_service(settings, request.service)
    if runners.native is None or service is None:
        if settings.worker_kind == "docker":
            raise RequestRejected("queue", _not_ours(settings, "native"))
        raise RequestRejected("service", _no_such_service(settings, request.service))
    return Route(runners.native, service.command, service.ceilings, service.name)


def _native_service(settings: ChildSettings, name: str) -> NativeService | None:
    by_name = {service.name: service for service in settings.native}
    return by_name.get(name) or by_name.get(None)


def _not_ours(settings: ChildSettings, kind: str) -> str:
    if settings.worker_kind == "services":
        return f"this worker runs no {kind} jobs (its config file has no [{kind}] table)"
    return f"this worker runs {settings.worker_kind!r} jobs, not {kind!r}"


def _no_such_service(settings: ChildSettings, name: str) -> str:
    """Names the service asked for, never the others' commands."""
    if settings.worker_kind == "native" and len(settings.native) == 1:
        return f"this worker serves {settings.native[0].name!r}, not {name!r}"
    return f"this worker serves no native service named {name!r}"

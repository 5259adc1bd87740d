"""Run a job in a Docker container with the docker SDK.

The container runs the message's image with the message's arguments as its command, after
the image's own ENTRYPOINT (like `docker run IMAGE ARG...`; no arguments: the image's CMD).
Only the job directory is mounted, at the same absolute path, so argv paths are valid inside
and out. Limits are the engine's (memory without swap, nano-CPUs, pids); the wall-clock and
CPU-time limits are enforced here. Every container carries labels naming the worker (its
scratch directory), the slot and the job, so whatever a crash leaves behind can be found.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from docker import APIClient
from docker.errors import APIError, DockerException, ImageNotFound
from docker.types import DeviceRequest, LogConfig, Mount
from docker.utils import kwargs_from_env
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout, RequestException
from urllib3.exceptions import ReadTimeoutError

from protocol.result import Usage
from runners.attach import AttachedStreams
from runners.cgroup import CgroupAccounting
from runners.container_settings import SLOT_LABEL, WORKER_LABEL, ContainerSettings
from runners.images import ImageFetcher
from runners.process import PROGRESS_VARIABLE, RunnerFault, RunOutcome, RunSpec, StopReason
from runners.pulls import PullNote
from runners.watch import UsageSample, watch

log = logging.getLogger(__name__)
API_TIMEOUT_S = 60
STATS_INTERVAL_S = 1.0  # the engine's stats: a round trip to the engine each
CGROUP_INTERVAL_S = 0.05  # the container's cgroup files, when the worker sees them: two small reads
MIN_EXIT_WAIT_S = 0.01
MAX_EXIT_WAIT_S = 10.0
MISSING_BIND_SOURCE = "bind source path does not exist"


def connect() -> APIClient:
    """A client for the engine the standard environment names (DOCKER_HOST, DOCKER_TLS_VERIFY...)."""
    with engine_errors("connecting"):
        return APIClient(version="auto", timeout=API_TIMEOUT_S, **kwargs_from_env())


@contextlib.contextmanager
def engine_errors(action: str) -> Iterator[None]:
    """The engine down, restarting or failing: a retryable system error, never a traceback.
    `action` says what was being done, e.g. "creating the container"."""
    try:
        yield
    except APIError as exc:
        raise RunnerFault(f"Docker engine error while {action}: {exc.explanation}") from exc
    except (DockerException, RequestException) as exc:
        raise RunnerFault(f"Docker engine unreachable while {action}: {exc}") from exc


def remove_containers(api: APIClient, labels: Mapping[str, str]) -> int:
    """Remove (running or not) every container carrying all of `labels`; how many there were."""
    found = api.containers(all=True, filters={"label": [f"{name}={value}" for name, value in labels.items()]})
    for container in found:
        api.remove_container(container["Id"], force=True, v=True)
        log.info("removed a container left by an earlier run", extra={"container": container["Id"][:12]})
    return len(found)


class DockerRunner:
    def __init__(
        self,
        settings: ContainerSettings,
        slot: int = 0,
        *,
        on_pull: Callable[[PullNote], None] | None = None,
    ) -> None:
        """`on_pull`: told of every pull the runner makes."""
        self.settings = settings
        self.slot = slot
        self.images = ImageFetcher(settings.images, settings.pulls, connect, on_pull=on_pull)
        uid, gid = settings.user or (os.getuid(), os.getgid())
        self.user = f"{uid}:{gid}"
        self._api: APIClient | None = None
        # Whether this slot may have left a container behind: its removal failed, or the engine
        # went away while one was being created. A slot runs one job at a time, so before the
        # next job every container labelled with it can go.
        self._may_have_leftovers = True

    @property
    def api(self) -> APIClient:
        if self._api is None:
            self._api = connect()
        return self._api

    def recover(self) -> None:
        """At start: remove containers an earlier child of this slot left (it crashed, say)."""
        try:
            self._remove_leftovers()
        except RunnerFault as exc:
            log.warning("cannot look for containers left by this slot", extra={"slot": self.slot, "error": str(exc)})

    def _remove_leftovers(self) -> None:
        if self._may_have_leftovers:
            with engine_errors("removing leftover containers"):
                remove_containers(self.api, {WORKER_LABEL: self.settings.worker_label, SLOT_LABEL: str(self.slot)})
            self._may_have_leftovers = False

    def prepare(self, image: str) -> None:
        self.settings.images.check_allowed(image)
        with engine_errors("getting the image"):
            self.images.ensure(image)

    def run(self, spec: RunSpec) -> RunOutcome:
        if self.settings.user is not None:
            _hand_over(spec.workdir, *self.settings.user)
        self._remove_leftovers()
        has_stdin = spec.stdin_path.stat().st_size > 0  # else the container's stdin stays closed
        try:
            with engine_errors("creating the container"):
                container = self._create(spec, has_stdin)
        except RunnerFault:
            self._may_have_leftovers = True  # the engine may have made it without telling us
            raise
        try:
            with engine_errors("running the container"):
                return _run_attached(self.api, container, spec, has_stdin)
        finally:
            self._remove(container)

    def _create(self, spec: RunSpec, has_stdin: bool) -> str:
        limits = spec.limits
        host_config = self.api.create_host_config(
            mounts=[Mount(target=str(spec.workdir), source=str(spec.workdir), type="bind")],
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,  # the same figure: no swap on top
            nano_cpus=None if limits.cpus is None else int(limits.cpus * 1e9),
            pids_limit=self.settings.pids_limit,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            network_mode=self.settings.network,
            # Output comes over the attach socket; the engine need not keep a copy on its disk.
            log_config=LogConfig(type=LogConfig.types.NONE),
            device_requests=device_requests(spec.gpus or ()),
        )
        environment = {name: os.environ[name] for name in self.settings.pass_env if name in os.environ}
        environment["HOME"] = str(spec.workdir)
        environment[PROGRESS_VARIABLE] = str(spec.progress_path)
        labels = {**spec.labels, WORKER_LABEL: self.settings.worker_label, SLOT_LABEL: str(self.slot)}

        def create() -> str:
            created = self.api.create_container(
                spec.image,
                command=spec.argv or None,
                user=self.user,
                working_dir=str(spec.workdir),
                environment=environment,
                labels=labels,
                host_config=host_config,
                stdin_open=has_stdin,
            )
            return str(created["Id"])

        try:
            try:
                return create()
            except ImageNotFound:  # removed since `prepare`
                self.images.ensure(spec.image)
                return create()
        except APIError as exc:
            if MISSING_BIND_SOURCE in str(exc.explanation):
                raise RunnerFault(
                    f"the job directory {spec.workdir} is not on the Docker host; when the worker runs in a "
                    "container, its --scratch-dir must be a host path mounted at the same path"
                ) from exc
            raise

    def _remove(self, container: str) -> None:
        try:
            with engine_errors("removing the container"):
                self.api.remove_container(container, force=True, v=True)
        except RunnerFault as exc:
            self._may_have_leftovers = True
            log.warning("cannot remove a container; will retry", extra={"container": container[:12], "error": str(exc)})


def _hand_over(directory: Path, uid: int, gid: int) -> None:
    """Make the job directory and its inputs the container user's, so the job can use them.
    Inputs linked from the input cache stay the worker's: readable by all, changeable by no job."""
    try:
        for current, dirnames, filenames in os.walk(directory):
            os.chown(current, uid, gid)
            for name in dirnames + filenames:
                path = os.path.join(current, name)
                if not _shared_read_only(path):
                    os.chown(path, uid, gid, follow_symlinks=False)
    except PermissionError as exc:
        raise RunnerFault(f"cannot give the job directory to the container user {uid}:{gid}: {exc}") from exc


def _shared_read_only(path: str) -> bool:
    status = os.lstat(path)
    writable = status.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    return stat.S_ISREG(status.st_mode) and status.st_nlink > 1 and not writable


class _ContainerJob:
    """The container, its attached streams and its stats, as the watch loop sees them."""

    def __init__(self, api: APIClient, container: str, streams: AttachedStreams) -> None:
        self.api = api
        self.container = container
        self.streams = streams
        self.status: dict[str, Any] | None = None
        self.accounting = CgroupAccounting.of_container(container)
        # The shortest exit wait worth asking for: doubled after each unanswered one, so that
        # an engine slower to answer than the watch loop's steps is still waited for long enough.
        self.shortest_wait_s = MIN_EXIT_WAIT_S

    def ended(self) -> dict[str, Any] | None:
        return self.status

    def wait(self, timeout_s: float) -> None:
        if not self.streams.finished:
            self.streams.pump(max(MIN_EXIT_WAIT_S, timeout_s))
            return
        # The output ended: normally the container has exited; a job that closed its
        # stdout and stderr early is waited for, still within its limits.
        timeout_s = max(self.shortest_wait_s, timeout_s)
        try:
            self.status = dict(self.api.wait(self.container, timeout=timeout_s))  # type: ignore[arg-type]  # float works
        except ReadTimeout:  # the engine answers a wait only once the container stops
            self.shortest_wait_s = min(2 * timeout_s, MAX_EXIT_WAIT_S)
        except RequestsConnectionError as exc:  # the same, when the answer had begun
            if not (exc.args and isinstance(exc.args[0], ReadTimeoutError)):
                raise
            self.shortest_wait_s = min(2 * timeout_s, MAX_EXIT_WAIT_S)

    def signal(self, signum: signal.Signals) -> None:
        try:
            self.api.kill(self.container, signal=signum.name)
        except APIError as exc:
            if exc.status_code != 409:  # 409: it is no longer running
                raise

    def sample(self) -> UsageSample:
        """Usage from the container's cgroup, else from the engine's stats; best effort."""
        if self.accounting is not None:
            return self.accounting.sample()
        try:
            stats = self.api.stats(self.container, stream=False, one_shot=True)
        except APIError:
            return UsageSample(None, None)
        memory = stats.get("memory_stats") or {}
        rss = memory.get("max_usage") or memory.get("usage")
        cpu_ns = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
        return UsageSample(int(rss) if rss else None, round(cpu_ns / 1e9, 3) if cpu_ns else None)


def _run_attached(api: APIClient, container: str, spec: RunSpec, has_stdin: bool) -> RunOutcome:
    """Start the container, feed and drain its streams, and watch it until it ends."""
    attached = api.attach_socket(container, params={"stdin": int(has_stdin), "stdout": 1, "stderr": 1, "stream": 1})
    # The engine enforces the memory limit (and reports an OOM kill); the rest is watched here.
    limits = dataclasses.replace(spec.limits, memory_bytes=None)
    with (
        spec.stdin_path.open("rb") as stdin,
        spec.stdout_path.open("wb") as stdout,
        spec.stderr_path.open("wb") as stderr,
    ):
        streams = AttachedStreams(getattr(attached, "_sock", attached), stdin if has_stdin else None, stdout, stderr)
        try:
            # From just before the container starts, as the native runner counts from just before its fork.
            started = time.monotonic()
            api.start(container)
            job = _ContainerJob(api, container, streams)
            # The cgroup's files are read at once and often; the engine's stats cost a round trip.
            interval = STATS_INTERVAL_S if job.accounting is None else CGROUP_INTERVAL_S
            first = STATS_INTERVAL_S if job.accounting is None else 0.0
            report = watch(
                job,
                limits,
                spec.kill_grace_s,
                started=started,
                sample_every_s=interval,
                first_sample_s=first,
                workdir=spec.workdir,  # bind-mounted: what the container writes there is on this side
                link=spec.link,
            )
        finally:
            streams.close()
    status_code = int(report.ended["StatusCode"])
    stopped_for = report.stopped_for
    memory_limited = spec.limits.memory_bytes is not None
    if status_code != 0 and stopped_for is None and memory_limited and _oom_killed(api, container):
        stopped_for = StopReason.MEMORY
    exit_code: int | None = status_code
    signal_name = None
    if stopped_for is not None and status_code > 128:
        with contextlib.suppress(ValueError):
            signal_name = signal.Signals(status_code - 128).name
            exit_code = None
    return RunOutcome(
        exit_code, signal_name, stopped_for, Usage(report.peak_rss_bytes, report.cpu_seconds, report.peak_disk_bytes)
    )


def _oom_killed(api: APIClient, container: str) -> bool:
    return bool(api.inspect_container(container)["State"].get("OOMKilled"))


def device_requests(gpus: tuple[str, ...]) -> list[DeviceRequest]:
    """A container's request for exactly its reserved devices, by UUID (none: it sees no GPU)."""
    if not gpus:
        return []
    return [DeviceRequest(driver="nvidia", device_ids=list(gpus), capabilities=[["gpu"]])]

"""Run a job as a native subprocess: own session and process group, minimal environment,
its whole process tree watched for memory, CPU time and wall-clock limits."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from protocol.result import Usage
from runners.deadline import StopSchedule
from runners.limits import cores_for
from runners.process import RunnerFault, RunOutcome, RunSpec
from runners.tree import ProcessTree

log = logging.getLogger(__name__)

# Variables a native job gets from the worker's environment unless told otherwise.
BASE_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ")
SAMPLE_INTERVAL_S = 0.1


def job_environment(workdir: Path, pass_env: Sequence[str], source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job's environment: a few basics plus what the operator passes on, never all of it."""
    source = os.environ if source is None else source
    environment = {name: source[name] for name in (*BASE_ENVIRONMENT, *pass_env) if name in source}
    environment.setdefault("PATH", os.defpath)
    environment["HOME"] = str(workdir)
    environment["TMPDIR"] = str(workdir)
    return environment


class NativeRunner:
    def __init__(
        self, pass_env: Sequence[str] = (), slot: int = 0, on_start: Callable[[int], None] | None = None
    ) -> None:
        self.pass_env = list(pass_env)
        self.slot = slot  # spreads pinned jobs of different slots over different cores
        self.on_start = on_start

    def recover(self) -> None:
        """Nothing to do: the supervisor kills a dead child's job by its process group."""

    def prepare(self, image: str) -> None:
        """Native jobs name no image."""

    def run(self, spec: RunSpec) -> RunOutcome:
        started = time.monotonic()
        process = self._start(spec)
        watch = _Watch(process.pid, spec)
        try:
            if self.on_start is not None:
                self.on_start(process.pid)
            status, rusage = watch.until_exit(started)
        finally:
            # Whatever the job left behind goes with it.
            watch.tree.kill()
            process.returncode = 0  # reaped by os.wait4; keeps Popen from waiting again
            watch.close()
        usage = Usage(max_rss_bytes=watch.max_rss_bytes, cpu_seconds=round(rusage.ru_utime + rusage.ru_stime, 3))
        exit_code, signal_name = None, None
        if os.WIFSIGNALED(status):
            signal_name = signal.Signals(os.WTERMSIG(status)).name
        else:
            exit_code = os.waitstatus_to_exitcode(status)
        return RunOutcome(exit_code, signal_name, watch.limit_hit, usage)

    def _start(self, spec: RunSpec) -> subprocess.Popen[bytes]:
        try:
            with (
                spec.stdin_path.open("rb") as stdin,
                spec.stdout_path.open("wb") as stdout,
                spec.stderr_path.open("wb") as stderr,
                _affinity(None if spec.limits.cpus is None else cores_for(spec.limits.cpus, self.slot)),
            ):
                return subprocess.Popen(
                    spec.argv,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    cwd=spec.workdir,
                    env=job_environment(spec.workdir, self.pass_env),
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise RunnerFault(f"cannot start {spec.argv[0]!r}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def _affinity(cores: set[int] | None) -> Iterator[None]:
    """Pin this (single-threaded) process while it forks, so the job inherits the pinning."""
    if cores is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


class _Watch:
    """Waits for the job's process, sampling its tree and enforcing the limits."""

    def __init__(self, pid: int, spec: RunSpec) -> None:
        self.pid = pid
        self.spec = spec
        self.pidfd = os.pidfd_open(pid)
        self.tree = ProcessTree(pid)
        self.max_rss_bytes = 0
        self.samples = 0
        self.limit_hit: str | None = None

    def until_exit(self, started: float) -> tuple[int, resource.struct_rusage]:
        limits = self.spec.limits
        schedule = StopSchedule(started, limits.timeout_s, self.spec.kill_grace_s)
        while True:
            reaped, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if reaped:
                return status, rusage
            now = time.monotonic()
            if self.limit_hit is None:
                self._check_resources(discover=self.samples > 0)
                if self.limit_hit is not None:
                    schedule.cancel()
            stop = schedule.due(now)
            if stop is signal.SIGTERM:
                self.limit_hit = "timeout"
                log.info("job timed out; stopping it", extra={"pid": self.pid, "timeout_s": limits.timeout_s})
            if stop is not None:
                self.tree.kill(stop)
            wake_at = min(t for t in (now + SAMPLE_INTERVAL_S, schedule.next_time()) if t is not None)
            # The pidfd becomes readable the moment the process exits: no polling delay.
            select.select([self.pidfd], [], [], max(0.0, wake_at - time.monotonic()))

    def _check_resources(self, *, discover: bool) -> None:
        sample = self.tree.sample(discover=discover)
        self.samples += 1
        self.max_rss_bytes = max(self.max_rss_bytes, sample.rss_bytes)
        limits = self.spec.limits
        if limits.memory_bytes is not None and sample.rss_bytes > limits.memory_bytes:
            self.limit_hit = "memory"
        elif limits.cpu_seconds is not None and sample.cpu_seconds > limits.cpu_seconds:
            self.limit_hit = "cpu_time"
        if self.limit_hit is not None:
            log.info(
                "job exceeded a limit; killing it",
                extra={"pid": self.pid, "limit": self.limit_hit, "rss_bytes": sample.rss_bytes},
            )
            self.tree.kill(signal.SIGKILL)

    def close(self) -> None:
        os.close(self.pidfd)

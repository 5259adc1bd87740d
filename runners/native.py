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
from typing import BinaryIO

from protocol.result import Usage
from runners.gpus import visible_devices
from runners.limits import cores_for
from runners.process import PROGRESS_VARIABLE, RunnerFault, RunOutcome, RunSpec
from runners.tree import ProcessTree
from runners.watch import UsageSample, watch

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
        job = _NativeJob(process.pid)
        try:
            if self.on_start is not None:
                self.on_start(process.pid)
            report = watch(
                job,
                spec.limits,
                spec.kill_grace_s,
                started=started,
                sample_every_s=SAMPLE_INTERVAL_S,
                first_sample_s=SAMPLE_INTERVAL_S,  # a short job is measured by its rusage alone
                workdir=spec.workdir,
                link=spec.link,
            )
        finally:
            # Whatever the job left behind goes with it.
            job.tree.kill()
            process.returncode = 0  # reaped by os.wait4; keeps Popen from waiting again
            job.close()
        status, rusage = report.ended
        # The kernel's accounting of the reaped job covers it and the descendants it waited for,
        # exactly; samples add up processes that ran at the same time.
        max_rss = max(report.peak_rss_bytes or 0, rusage.ru_maxrss * 1024)
        cpu_seconds = round(rusage.ru_utime + rusage.ru_stime, 3)
        usage = Usage(max_rss_bytes=max_rss, cpu_seconds=cpu_seconds, disk_bytes=report.peak_disk_bytes)
        exit_code, signal_name = None, None
        if os.WIFSIGNALED(status):
            signal_name = signal.Signals(os.WTERMSIG(status)).name
        else:
            exit_code = os.waitstatus_to_exitcode(status)
        return RunOutcome(exit_code, signal_name, report.stopped_for, usage)

    def _start(self, spec: RunSpec) -> subprocess.Popen[bytes]:
        try:
            with (
                spec.stdin_path.open("rb") as stdin,
                _open_for_writing(spec.stdout_path) as stdout,
                _open_for_writing(spec.stderr_path) as stderr,
                _affinity(None if spec.limits.cpus is None else cores_for(spec.limits.cpus, self.slot)),
            ):
                return subprocess.Popen(
                    spec.argv,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    cwd=spec.workdir,
                    env={
                        **job_environment(spec.workdir, self.pass_env),
                        PROGRESS_VARIABLE: str(spec.progress_path),
                        **({} if spec.gpus is None else visible_devices(spec.gpus)),
                    },
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise RunnerFault(f"cannot start {spec.argv[0]!r}: {exc.strerror or exc}") from exc


def _open_for_writing(path: Path) -> BinaryIO:
    """The file, created if missing, emptied if not empty (an empty one keeps its times: no
    inode change to write)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if os.fstat(descriptor).st_size:
        os.ftruncate(descriptor, 0)
    return os.fdopen(descriptor, "wb")


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


class _NativeJob:
    """The job's process and its tree, as the watch loop sees them."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self.tree = ProcessTree(pid)

    def ended(self) -> tuple[int, resource.struct_rusage] | None:
        reaped, status, rusage = os.wait4(self.pid, os.WNOHANG)
        return (status, rusage) if reaped else None

    def sample(self) -> UsageSample:
        sample = self.tree.sample()
        return UsageSample(sample.rss_bytes, sample.cpu_seconds)

    def signal(self, signum: signal.Signals) -> None:
        self.tree.kill(signum)

    def wait(self, timeout_s: float) -> None:
        # The pidfd becomes readable the moment the process exits: no polling delay.
        select.select([self.pidfd], [], [], timeout_s)

    def close(self) -> None:
        os.close(self.pidfd)

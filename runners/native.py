"""Run a job as a native subprocess: own session and process group, minimal environment."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import select
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from protocol.result import Usage
from runners.process import RunnerFault, RunOutcome, RunSpec
from runners.tree import tree_rss_bytes

log = logging.getLogger(__name__)

# Variables a native job gets from the worker's environment unless told otherwise.
BASE_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ")
SAMPLE_INTERVAL_S = 0.25


def job_environment(workdir: Path, pass_env: Sequence[str], source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job's environment: a few basics plus what the operator passes on, never all of it."""
    source = os.environ if source is None else source
    environment = {name: source[name] for (name) in (*BASE_ENVIRONMENT, *pass_env) if name in source}
    environment.setdefault("PATH", os.defpath)
    environment["HOME"] = str(workdir)
    environment["TMPDIR"] = str(workdir / "tmp")
    return environment


class NativeRunner:
    def __init__(self, pass_env: Sequence[str] = (), kill_grace_s: float = 10.0) -> None:
        self.pass_env = list(pass_env)
        self.kill_grace_s = kill_grace_s

    def run(self, spec: RunSpec) -> RunOutcome:
        started = time.monotonic()
        process = self._start(spec)
        deadline = None if spec.timeout_s is None else started + spec.timeout_s
        timed_out = False
        watcher = _TreeWatcher(process.pid)
        try:
            status, rusage = watcher.wait(deadline)
            if status is None:
                timed_out = True
                log.info("job timed out; stopping it", extra={"pid": process.pid, "timeout_s": spec.timeout_s})
                _signal_group(process.pid, signal.SIGTERM)
                status, rusage = watcher.wait(time.monotonic() + self.kill_grace_s)
                if status is None:
                    _signal_group(process.pid, signal.SIGKILL)
                    status, rusage = watcher.wait(None)
        finally:
            # Whatever the job left behind in its process group goes with it.
            _signal_group(process.pid, signal.SIGKILL)
            process.returncode = 0  # reaped by os.wait4; keeps Popen from waiting again
            watcher.close()
        assert status is not None and rusage is not None
        usage = Usage(
            max_rss_bytes=watcher.max_rss_bytes or None, cpu_seconds=round(rusage.ru_utime + rusage.ru_stime, 3)
        )
        if os.WIFSIGNALED(status):
            return RunOutcome(None, signal.Signals(os.WTERMSIG(status)).name, timed_out, usage)
        return RunOutcome(os.waitstatus_to_exitcode(status), None, timed_out, usage)

    def _start(self, spec: RunSpec) -> subprocess.Popen[bytes]:
        try:
            with (
                spec.stdin_path.open("rb") as stdin,
                spec.stdout_path.open("wb") as stdout,
                spec.stderr_path.open("wb") as stderr,
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


class _TreeWatcher:
    """Waits for the job's process, sampling its tree's memory while it runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self.max_rss_bytes = 0

    def _sample(self) -> None:
        rss = tree_rss_bytes(self.pid)
        if rss is not None:
            self.max_rss_bytes = max(self.max_rss_bytes, rss)

    def wait(self, deadline: float | None) -> tuple[int | None, resource.struct_rusage | None]:
        """Reap the process, or return (None, None) if it still runs at `deadline`."""
        while True:
            self._sample()
            reaped, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if reaped:
                return status, rusage
            remaining = SAMPLE_INTERVAL_S
            if deadline is not None:
                remaining = min(remaining, deadline - time.monotonic())
            if remaining <= 0:
                return None, None
            # The pidfd becomes readable the moment the process exits: no polling delay.
            select.select([self.pidfd], [], [], remaining)

    def close(self) -> None:
        os.close(self.pidfd)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)

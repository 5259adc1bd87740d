"""The native runner: real processes, real process groups, real signals."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from runners.limits import JobLimits
from runners.native import NativeRunner, job_environment
from runners.process import RunnerFault, RunSpec, StopReason
from staging.workspace import Workspace
from testkit.waiting import wait_until
from tests.support import process_exists

pytestmark = pytest.mark.integration  # every test here runs real job processes


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path)


def spec(
    workspace: Workspace, argv: list[str], stdin: str = "", limits: JobLimits | None = None, kill_grace_s: float = 10
) -> RunSpec:
    stdin_path = workspace.streams / "stdin"
    stdin_path.write_text(stdin)
    return RunSpec(
        argv,
        workspace.root,
        stdin_path,
        workspace.streams / "stdout",
        workspace.streams / "stderr",
        limits or JobLimits(),
        kill_grace_s,
    )


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_stdin_stdout_and_stderr_are_separate_files(workspace: Workspace) -> None:
    run_spec = spec(
        workspace,
        python("import sys; d = sys.stdin.read(); print(d.upper()); print('warn', file=sys.stderr)"),
        "data",
    )
    outcome = NativeRunner().run(run_spec)
    assert (outcome.exit_code, outcome.signal, (outcome.stopped_for is StopReason.TIMEOUT)) == (0, None, False)
    assert run_spec.stdout_path.read_text() == "DATA\n"
    assert run_spec.stderr_path.read_text() == "warn\n"
    assert outcome.usage.cpu_seconds is not None


def test_exit_code_and_signal_are_reported(workspace: Workspace) -> None:
    assert NativeRunner().run(spec(workspace, python("raise SystemExit(7)"))).exit_code == 7
    outcome = NativeRunner().run(spec(workspace, python("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")))
    assert (outcome.exit_code, outcome.signal) == (None, "SIGSEGV")


def test_memory_of_a_running_job_is_sampled(workspace: Workspace) -> None:
    outcome = NativeRunner().run(
        spec(workspace, python("b = bytearray(64 * 1024 * 1024); import time; time.sleep(0.6)"))
    )
    assert outcome.usage.max_rss_bytes is not None
    assert outcome.usage.max_rss_bytes > 64 * 1024 * 1024


def test_job_runs_in_its_directory_with_a_minimal_environment(workspace: Workspace) -> None:
    os.environ["API_WORKER_TEST_SECRET"] = "leak"
    try:
        run_spec = spec(workspace, python("import os; print(os.getcwd()); print(sorted(os.environ))"))
        NativeRunner(pass_env=["API_WORKER_TEST_PASSED"]).run(run_spec)
    finally:
        del os.environ["API_WORKER_TEST_SECRET"]
    cwd, names = run_spec.stdout_path.read_text().splitlines()
    assert cwd == str(workspace.root)
    assert "API_WORKER_TEST_SECRET" not in names
    assert "'HOME'" in names and "'TMPDIR'" in names


def test_pass_env_forwards_named_variables(tmp_path: Path) -> None:
    environment = job_environment(tmp_path, ["TOKEN"], {"TOKEN": "t", "OTHER": "o", "PATH": "/bin"})
    assert environment == {"TOKEN": "t", "PATH": "/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}


def test_job_is_in_its_own_process_group(workspace: Workspace) -> None:
    run_spec = spec(workspace, python("import os; print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid())"))
    NativeRunner().run(run_spec)
    assert run_spec.stdout_path.read_text() == "True True\n"


def test_timeout_kills_the_whole_tree(workspace: Workspace) -> None:
    pid_file = workspace.root / "grandchild.pid"
    code = _spawn_sleeper(pid_file) + "time.sleep(60)\n"
    outcome = NativeRunner().run(spec(workspace, python(code), limits=JobLimits(timeout_s=1.0), kill_grace_s=1))
    assert outcome.stopped_for is StopReason.TIMEOUT
    assert outcome.signal in ("SIGTERM", "SIGKILL")
    grandchild = int(wait_until(lambda: pid_file.read_text() if pid_file.exists() else None, 5, "the pid file"))
    wait_until(lambda: not process_exists(grandchild) or _is_zombie(grandchild), 5, "the grandchild to die")


def test_a_job_ignoring_sigterm_is_killed_after_the_grace(workspace: Workspace) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    outcome = NativeRunner().run(spec(workspace, python(code), limits=JobLimits(timeout_s=0.5), kill_grace_s=0.5))
    assert ((outcome.stopped_for is StopReason.TIMEOUT), outcome.signal) == (True, "SIGKILL")


def test_leftover_processes_of_a_finished_job_are_killed(workspace: Workspace) -> None:
    pid_file = workspace.root / "daemon.pid"
    code = _spawn_sleeper(pid_file)
    NativeRunner().run(spec(workspace, python(code)))
    daemon = int(pid_file.read_text())
    wait_until(lambda: not process_exists(daemon) or _is_zombie(daemon), 5, "the leftover process to die")


def test_memory_limit_counts_the_whole_tree_and_kills_it(workspace: Workspace) -> None:
    # Parent and child each stay under the limit; together they exceed it.
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    b = bytearray(60 * 1024 * 1024); time.sleep(60)\n"
        "b = bytearray(60 * 1024 * 1024); time.sleep(60)\n"
    )
    outcome = NativeRunner().run(spec(workspace, python(code), limits=JobLimits(memory_bytes=100 * 1024 * 1024)))
    assert (outcome.stopped_for, outcome.signal) == (StopReason.MEMORY, "SIGKILL")
    assert outcome.usage.max_rss_bytes is not None and outcome.usage.max_rss_bytes > 100 * 1024 * 1024


def test_cpu_time_limit_kills_a_spinning_job(workspace: Workspace) -> None:
    outcome = NativeRunner().run(spec(workspace, python("while True: pass"), limits=JobLimits(cpu_seconds=0.5)))
    assert (outcome.stopped_for, outcome.signal) == (StopReason.CPU_TIME, "SIGKILL")


def test_cpus_pin_the_job_to_that_many_cores(workspace: Workspace) -> None:
    run_spec = spec(workspace, python("import os; print(len(os.sched_getaffinity(0)))"), limits=JobLimits(cpus=1))
    NativeRunner(slot=1).run(run_spec)
    assert run_spec.stdout_path.read_text() == "1\n"
    assert len(os.sched_getaffinity(0)) == os.cpu_count()  # the runner's own process is unpinned again


def test_usage_is_reported_for_every_job(workspace: Workspace) -> None:
    usage = NativeRunner().run(spec(workspace, ["true"])).usage  # over before any sample: the kernel's figures
    assert usage.max_rss_bytes is not None and usage.max_rss_bytes > 0 and usage.cpu_seconds is not None


def test_a_missing_executable_is_a_runner_fault(workspace: Workspace) -> None:
    with pytest.raises(RunnerFault, match="cannot start '/nonexistent/tool'"):
        NativeRunner().run(spec(workspace, ["/nonexistent/tool"]))


def _spawn_sleeper(pid_file: Path) -> str:
    """Python code that starts a long-sleeping child and writes its pid to `pid_file`."""
    return (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
    )


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True

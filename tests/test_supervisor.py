"""The process model under stress: limits, heartbeats, hoarding, shutdown, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import psutil

from testkit.waiting import wait_until
from tests.support import REPO, Worker, in_flight_count, job, pool_children, process_exists

WorkerFactory = Callable[..., Worker]


def parameter(name: str, value: object) -> dict[str, object]:
    return {"type": "parameter", "name": name, "value": value}


def test_a_job_whose_child_allocates_past_the_limit_is_killed(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(options=["--job-memory", "1G"]).start()
    message = job([parameter("--child-allocate", 200), parameter("--sleep", 30)], resources={"memory": "150M"})
    result = worker.result(worker.submit(message))
    assert result["status"] == "killed"
    assert result["error"]["type"] == "memory"
    assert result["error"]["message"] == "the job's processes used more than 150M of memory"
    assert result["usage"]["max_rss_bytes"] > 150 * 1024 * 1024


def test_a_job_over_its_cpu_time_is_killed(tmp_path: Path) -> None:
    spinner = Worker(
        tmp_path, options=["--job-cpu-time", "0.5"], program=["--", sys.executable, "-c", "while True: pass"]
    )
    spinner.start()
    try:
        result = spinner.result(spinner.submit(job()))
        assert (result["status"], result["error"]["type"]) == ("killed", "cpu_time")
        assert result["usage"]["cpu_seconds"] >= 0.5
    finally:
        spinner.stop()


def test_a_job_past_its_timeout_is_stopped_with_its_grandchildren(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory(options=["--job-timeout", "30", "--kill-grace", "1"]).start()
    pid_file = tmp_path / "sleeper.pid"
    message = job([parameter("--spawn-sleeper", str(pid_file)), parameter("--sleep", 60)], timeout=1)
    result = worker.result(worker.submit(message))
    assert (result["status"], result["error"]["type"]) == ("timeout", "timeout")
    grandchild = int(pid_file.read_text())
    wait_until(lambda: not _alive(grandchild), 5, "the grandchild to be gone")


def test_asking_for_more_than_the_ceiling_is_rejected(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(options=["--job-timeout", "10", "--job-memory", "512M"]).start()
    too_long = worker.result(worker.submit(job(timeout=20)))
    assert too_long["status"] == "rejected"
    assert too_long["error"]["message"] == "timeout: asks for 20s, more than this worker's limit of 10s"
    too_big = worker.result(worker.submit(job(resources={"memory": "1G"})))
    assert too_big["error"]["message"] == "resources.memory: asks for 1 GiB, more than this worker's limit of 512 MiB"


def test_usage_is_filled_for_every_job(worker_factory: WorkerFactory) -> None:
    worker = worker_factory().start()
    usage = worker.result(worker.submit(job()))["usage"]
    assert isinstance(usage["max_rss_bytes"], int) and isinstance(usage["cpu_seconds"], float)


def test_a_job_lasting_three_visibility_timeouts_runs_once(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory(workers=2, options=["--visibility-timeout", "1"]).start()
    message_id = worker.submit(job([parameter("--sleep", 3.5)]))
    result = worker.result(message_id)
    assert (result["status"], result["attempt"]) == ("succeeded", 1)
    starts = [r for r in worker.log_records() if r.get("message") == "job started"]
    assert [r["message_id"] for r in starts] == [message_id]


def test_no_more_messages_are_received_than_there_are_free_slots(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory(workers=2).start()
    first = worker.submit_and_await_start(tmp_path / "first", 30)
    second = worker.submit_and_await_start(tmp_path / "second", 30)
    waiting = [worker.submit(job()) for _ in range(5)]
    wait_until(lambda: worker.jobs.count() == 7, 5, "all messages queued")
    # Both slots are busy: the five waiting messages stay in the queue, untouched.
    assert in_flight_count(worker.jobs) == 2
    assert all(worker.results_for(m) == [] for m in waiting)
    assert {first, second}.isdisjoint(waiting)


def test_sigterm_waits_for_the_grace_then_kills_and_releases(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory(options=["--shutdown-grace", "1"]).start()
    message_id = worker.submit_and_await_start(tmp_path / "started", 60)
    job_pid = int((tmp_path / "started").read_text())
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=20) == 0
    worker.wait_for_log("shutdown grace is over: interrupting running jobs")
    assert not _alive(job_pid)
    assert worker.results_for(message_id) == []
    (released,) = worker.jobs.receive(1, 0, visibility_timeout=60)
    assert (released.message_id, released.receive_count) == (message_id, 2)


def test_sigkill_of_the_supervisor_leaves_no_job_running(tmp_path: Path) -> None:
    options = ["--visibility-timeout", "2", "--workers", "2"]
    worker = Worker(tmp_path, options=options).start()
    message_id = worker.submit_and_await_start(tmp_path / "started", 60)
    job_pid = int((tmp_path / "started").read_text())
    assert worker.process is not None
    children = pool_children(worker)
    assert len(children) == 2
    worker.signal(signal.SIGKILL)
    worker.wait_exit()
    wait_until(lambda: not _alive(job_pid), 10, "the job process to die with the supervisor")
    wait_until(lambda: not any(_alive(pid) for pid in children), 10, "the children to die with the supervisor")

    (tmp_path / "started").unlink()
    restarted = Worker(tmp_path, options=options).start()
    try:
        wait_until((tmp_path / "started").exists, 30, "the job to run again")
        assert in_flight_count(restarted.jobs) == 1
        starts = [r for r in restarted.log_records() if r.get("message") == "job started"]
        assert (starts[-1]["message_id"], starts[-1]["attempt"]) == (message_id, 2)
    finally:
        restarted.stop()


def test_sigkill_of_a_child_kills_its_job_and_refills_the_slot(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory().start()
    message_id = worker.submit_and_await_start(tmp_path / "started", 60)
    job_pid = int((tmp_path / "started").read_text())
    child = psutil.Process(job_pid).parent()
    assert child is not None
    child.kill()
    wait_until(lambda: not _alive(job_pid), 10, "the orphaned job to be killed")
    first = wait_until(lambda: worker.results_for(message_id), 20, "the lost job's report")[0]
    assert (first["status"], first["final"]) == ("error", False)
    # The slot is refilled and the released job runs again in it.
    (tmp_path / "started").unlink()
    wait_until((tmp_path / "started").exists, 30, "the job to run again")
    assert len(pool_children(worker)) == 1


def test_children_failing_at_start_make_the_supervisor_give_up(tmp_path: Path) -> None:
    # A sitecustomize that breaks only the pool's children (spawned with --multiprocessing-fork).
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import sys
            if "--multiprocessing-fork" in sys.orig_argv:
                raise SystemExit("broken install")
            """
        )
    )
    worker = Worker(tmp_path)
    environment = dict(os.environ, PYTHONPATH=str(site))
    completed = subprocess.run(
        worker.command(), check=False, env=environment, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 3
    assert "children keep failing to start; giving up" in completed.stderr


def _alive(pid: int) -> bool:
    if not process_exists(pid):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

"""Many workers on one box: instance names key the default paths, and every per-worker path
(scratch directory, journal) is locked while its worker runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from config.settings import WorkerSettings, parse_settings
from queues import default_instance_name
from tests.support import Worker, job


def test_workers_of_different_queues_on_default_paths_both_run(tmp_path: Path, tool_image: str) -> None:
    native = Worker(tmp_path / "a", default_paths=True)
    docker = Worker(tmp_path / "b", default_paths=True, runner=["docker"])
    try:
        native.start()
        docker.start()
        assert native.scratch != docker.scratch and native.journal_path != docker.journal_path
        native_result = native.result(native.submit(job()))
        docker_result = docker.result(docker.submit(job(service=tool_image, queue="docker")), timeout=60)
        assert (native_result["status"], docker_result["status"]) == ("succeeded", "succeeded")
        assert native_result["worker"]["name"] == default_instance_name(native.queue_spec)
        assert docker_result["worker"]["name"] == default_instance_name(docker.queue_spec)
    finally:
        native.stop()
        docker.stop()


def test_a_second_worker_on_a_held_scratch_directory_exits_2_and_the_first_job_goes_on(tmp_path: Path) -> None:
    first = Worker(tmp_path / "first").start()
    try:
        started = tmp_path / "started"
        message_id = first.submit_and_await_start(started, 2)
        second = Worker(tmp_path / "second")
        second.scratch = first.scratch
        completed = subprocess.run(second.command(), capture_output=True, text=True, timeout=60, check=False)
        assert completed.returncode == 2
        assert f"scratch directory {first.scratch} is in use by another worker (pid {first_pid(first)})" in (
            completed.stderr
        ), completed.stderr
        assert "give this worker its own --scratch-dir, or another --name" in completed.stderr
        assert first.result(message_id)["status"] == "succeeded"
    finally:
        first.stop()


def test_a_second_worker_on_a_held_journal_exits_2_naming_the_flag(tmp_path: Path) -> None:
    first = Worker(tmp_path / "first").start()
    try:
        second = Worker(tmp_path / "second")
        second.journal_path = first.journal_path
        completed = subprocess.run(second.command(), capture_output=True, text=True, timeout=60, check=False)
        assert completed.returncode == 2
        assert f"journal {first.journal_path} is in use by another worker (pid {first_pid(first)})" in (
            completed.stderr
        )
        assert "give this worker its own --journal, or another --name" in completed.stderr
    finally:
        first.stop()


def test_the_instance_name_keys_the_default_paths() -> None:
    named = parse_settings(["--name", "gdal", "native", "--", "true"], {})
    assert isinstance(named, WorkerSettings)
    state = Path(os.environ["XDG_STATE_HOME"]) / "api-worker"
    assert (named.name, named.scratch_dir, named.journal) == (
        "gdal",
        state / "gdal" / "scratch",
        state / "gdal" / "journal.sqlite3",
    )
    from_env = parse_settings(["native", "--", "true"], {"API_WORKER_NAME": "wc"})
    assert isinstance(from_env, WorkerSettings) and from_env.name == "wc"
    a = parse_settings(["--queue", "local:/srv/a/q.sqlite3", "native", "--", "true"], {})
    b = parse_settings(["--queue", "local:/srv/b/q.sqlite3", "native", "--", "true"], {})
    assert isinstance(a, WorkerSettings) and isinstance(b, WorkerSettings)
    assert a.name.startswith("q-jobs-") and a.name != b.name and a.scratch_dir != b.scratch_dir
    sqs = default_instance_name("https://sqs.eu-west-1.amazonaws.com/123456789012/gdal-jobs.fifo")
    assert sqs.startswith("gdal-jobs.fifo-")


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "x" * 65, "space name"])
def test_a_bad_instance_name_is_a_usage_error(name: str, tmp_path: Path) -> None:
    completed = subprocess.run(
        [*Worker(tmp_path).command()[:2], "--name", name, "native", "--", "true"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 2 and "is no instance name" in completed.stderr


def first_pid(worker: Worker) -> int:
    assert worker.process is not None
    return worker.process.pid

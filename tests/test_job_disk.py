"""--job-disk bounds all a job holds in its directory while it runs (runners/disk.py): inputs and
what it writes, natively and in a container (through the bind-mounted directory)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pool.child.limits import resolve_limits
from runners.disk import DiskProbe, tree_bytes
from runners.limits import JobLimits
from tests.support import Worker, job, parse_request

WorkerFactory = Callable[..., Worker]


def parameter(name: str, value: object) -> dict[str, object]:
    return {"type": "parameter", "name": name, "value": value}


def test_a_job_writing_past_its_disk_limit_is_killed_and_leaves_nothing(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(options=["--job-disk", "50M"]).start()
    result = worker.result(worker.submit(job([parameter("--write-mb", 300), parameter("--sleep", 30)])), timeout=60)
    assert (result["status"], result["error"]["type"]) == ("killed", "disk")
    assert result["error"]["message"].startswith("the job's directory held ")
    assert result["error"]["message"].endswith(", more than its limit of 50M")
    assert result["usage"]["disk_bytes"] > 50 * 1024 * 1024
    assert worker.leftovers() == []


def test_a_quick_writer_is_caught_at_its_end_and_a_message_may_ask_for_less(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(options=["--job-disk", "50M"]).start()
    quick = worker.result(worker.submit(job([parameter("--write-mb", 60)])), timeout=60)
    assert (quick["status"], quick["error"]["type"]) == ("killed", "disk")
    asks_less = worker.result(
        worker.submit(job([parameter("--write-mb", 30), parameter("--sleep", 30)], resources={"disk": "20M"})),
        timeout=60,
    )
    assert (asks_less["status"], asks_less["error"]["type"]) == ("killed", "disk")
    fits = worker.result(worker.submit(job([parameter("--write-mb", 5)])))
    assert fits["status"] == "succeeded" and fits["usage"]["disk_bytes"] >= 5 * 1024 * 1024
    too_much = worker.result(worker.submit(job(resources={"disk": "1G"})))
    assert (
        too_much["status"] == "rejected" and "more than this worker's limit of 50 MiB" in too_much["error"]["message"]
    )


def test_a_containers_writes_count_through_its_directory(worker_factory: WorkerFactory, tool_image: str) -> None:
    worker = worker_factory(options=["--job-disk", "50M"], runner=["docker"]).start()
    message = job([parameter("--write-mb", 300), parameter("--sleep", 30)], service=tool_image, queue="docker")
    result = worker.result(worker.submit(message), timeout=90)
    assert (result["status"], result["error"]["type"]) == ("killed", "disk")
    assert worker.leftovers() == []


def test_the_probe_counts_a_tree_and_spaces_out_walks_of_a_large_one(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"x" * 100_000)
    (tmp_path / "link").symlink_to("/usr")  # not followed
    assert 100_000 <= tree_bytes(tmp_path) < 200_000
    probe = DiskProbe(tmp_path, first_at=0.0)
    assert probe.measure() == tree_bytes(tmp_path) and probe.peak_bytes > 0
    assert tree_bytes(tmp_path / "gone") == 0


def test_resources_disk_is_resolved_within_the_ceiling() -> None:
    body = '{"service": "s", "queue": "native", "command": {}, "resources": {"disk": "2G"}}'
    assert resolve_limits(parse_request(body), JobLimits(disk_bytes=10 * 1024**3)).disk_bytes == 2 * 1024**3
    assert resolve_limits(parse_request(body), JobLimits()).disk_bytes == 2 * 1024**3

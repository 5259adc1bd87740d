"""The docker runner against a real engine: images, mounts, limits, isolation, orphans."""

from __future__ import annotations

import base64
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from docker import APIClient

from testkit.images import BASE_IMAGE
from testkit.moto_server import MotoServer, free_port
from testkit.tcp_proxy import TcpProxy
from testkit.waiting import wait_until
from tests.engine import EmptyRegistry, engine_socket_path, worker_containers
from tests.support import REPO, SEED_INPUTS, Worker, check_seed_result, seed_job

WorkerFactory = Callable[..., Worker]


def docker_job(image: str, arguments: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"test": False, "service": image, "queue": "docker", "command": {"arguments": arguments}, **fields}


def parameter(name: str, value: str | int | float) -> dict[str, Any]:
    return {"type": "parameter", "name": name, "value": value}


def sandbox_report(result: dict[str, Any]) -> dict[str, str]:
    lines = [line.partition("=") for line in result["stdout"].splitlines() if "=" in line]
    return {name: value.strip() for name, _, value in lines}


def test_seed_message_runs_in_a_container(
    worker_factory: WorkerFactory, tool_image: str, moto: MotoServer, bucket: str
) -> None:
    s3 = boto3.client("s3")
    for path, content in SEED_INPUTS.items():
        s3.put_object(Bucket=bucket, Key=path, Body=content)
    worker = worker_factory(runner=["docker"]).start()
    message = {**seed_job(f"s3://{bucket}"), "service": tool_image, "queue": "docker"}
    result = worker.result(worker.submit(message))

    check_seed_result(result, f"s3://{bucket}", lambda key: s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    stderr = s3.get_object(Bucket=bucket, Key="out/stderr.txt")["Body"].read().decode()
    # Files the job writes belong to the worker's user, though the image says USER 4242.
    assert f"outfile-owner={os.getuid()}:{os.getgid()}" in stderr
    assert worker.leftovers() == []


def test_a_job_container_is_sandboxed(worker_factory: WorkerFactory, tool_image: str) -> None:
    worker = worker_factory(runner=["docker", "--network", "none"]).start()
    result = worker.result(worker.submit(docker_job(tool_image, [{"type": "parameter", "value": "--print-sandbox"}])))

    assert result["status"] == "succeeded", result
    report = sandbox_report(result)
    assert report["id"] == f"{os.getuid()}:{os.getgid()}"  # not the image's USER 4242
    assert report["caps"] == "0000000000000000"
    assert report["nonewprivs"] == "1"
    assert report["interfaces"] == "lo"
    # The job directory is mounted at its own path and is the working and home directory.
    assert report["cwd"] == report["home"]
    assert report["cwd"].startswith(str(worker.scratch.resolve()) + "/job-")


def test_container_user_runs_the_job_as_that_user(worker_factory: WorkerFactory, tool_image: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("--container-user needs a worker running as root")
    worker = worker_factory(runner=["docker", "--container-user", "4321:4321"]).start()
    message = docker_job(
        tool_image,
        [parameter("--outfile", "made-here.txt"), {"type": "parameter", "value": "--print-sandbox"}],
    )
    result = worker.result(worker.submit(message))

    assert result["status"] == "succeeded", result
    assert sandbox_report(result)["id"] == "4321:4321"
    assert worker.leftovers() == []  # the worker could still remove what that user made


def test_memory_limit_kills_the_container(worker_factory: WorkerFactory, tool_image: str) -> None:
    worker = worker_factory(options=["--job-memory", "64M"], runner=["docker"]).start()
    result = worker.result(worker.submit(docker_job(tool_image, [parameter("--allocate", 256)])))

    assert result["status"] == "killed", result
    assert result["error"]["type"] == "memory"
    assert (result["exit_code"], result["signal"]) == (None, "SIGKILL")


def test_timeout_stops_the_container_and_removes_it(
    worker_factory: WorkerFactory, tool_image: str, docker_api: APIClient
) -> None:
    worker = worker_factory(options=["--job-timeout", "1", "--kill-grace", "1"], runner=["docker"]).start()
    message_id = worker.submit(docker_job(tool_image, [parameter("--sleep", 60)]))
    wait_until(lambda: worker_containers(docker_api, worker.scratch), 20, "the job's container")
    result = worker.result(message_id)

    assert result["status"] == "timeout", result
    assert result["error"]["type"] == "timeout"
    assert result["duration_s"] < 30
    assert worker_containers(docker_api, worker.scratch) == []


def test_a_job_that_closes_its_output_early_is_waited_for(worker_factory: WorkerFactory, tool_image: str) -> None:
    """Its streams end long before it does: the worker waits for its exit in short steps, each
    of which the engine leaves unanswered, and still reports it as it ended."""
    worker = worker_factory(runner=["docker"]).start()
    result = worker.result(worker.submit(docker_job(tool_image, [parameter("--close-output", 2.5)])))

    assert (result["status"], result["exit_code"]) == ("succeeded", 0), result
    assert result["duration_s"] >= 2.5


def test_an_engine_slower_than_the_watch_loop_still_has_the_exit_waited_for(
    worker_factory: WorkerFactory, tool_image: str
) -> None:
    """Every answer of the engine arrives 1.2 s late, later than any of the watch loop's steps:
    its exit waits go unanswered until they are made long enough, and the job ends as it did."""
    socket_path = engine_socket_path()
    if socket_path is None:
        pytest.skip("needs an engine on a unix socket to put a proxy in front of it")
    proxy = TcpProxy(socket_path, latency_s=1.2)
    try:
        worker = worker_factory(runner=["docker"], environment={"DOCKER_HOST": f"tcp://127.0.0.1:{proxy.port}"})
        result = worker.start().result(worker.submit(docker_job(tool_image, [parameter("--close-output", 1)])), 120)
        assert (result["status"], result["exit_code"]) == ("succeeded", 0), result
    finally:
        proxy.stop()


def test_cpu_time_limit_kills_a_busy_container(worker_factory: WorkerFactory, tool_image: str) -> None:
    worker = worker_factory(options=["--job-cpu-time", "0.5"], runner=["docker"]).start()
    result = worker.result(worker.submit(docker_job(tool_image, [{"type": "parameter", "value": "--spin"}])))

    assert result["status"] == "killed", result
    assert result["error"]["type"] == "cpu_time"
    assert result["usage"]["cpu_seconds"] > 0.5


def test_a_sub_second_container_reports_its_usage(worker_factory: WorkerFactory, tool_image: str) -> None:
    worker = worker_factory(runner=["docker"]).start()
    job = docker_job(tool_image, [parameter("--allocate", 20), parameter("--sleep", 0.3)])
    result = worker.result(worker.submit(job))

    assert result["status"] == "succeeded", result
    assert result["duration_s"] < 5
    assert result["usage"]["max_rss_bytes"] > 0
    assert result["usage"]["cpu_seconds"] is not None


def test_a_container_reports_progress_through_its_mounted_file(worker_factory: WorkerFactory, tool_image: str) -> None:
    worker = worker_factory(options=["--progress-interval", "0.1"], runner=["docker"]).start()
    job = docker_job(tool_image, [parameter("--progress", "30 one"), parameter("--progress", "70 two")], events=True)
    message_id = worker.submit(job)
    worker.result(message_id)
    messages = worker.results_for(message_id)

    assert [m["status"] for m in messages] == ["running", "progress", "progress", "succeeded"]
    assert [m["progress"]["percent"] for m in messages[1:3]] == [30.0, 70.0]


def test_the_docker_example_runs(worker_factory: WorkerFactory, tool_image: str, tmp_path: Path) -> None:
    example = json.loads((REPO / "examples" / "docker-upper.json").read_text())
    # A busybox like the example's, built here (no registry to pull from); its entrypoint is
    # already `sh -c`, so the example's first two words go.
    example["service"] = BASE_IMAGE
    arguments = example["command"]["arguments"]
    assert [argument["value"] for argument in arguments[:2]] == ["sh", "-c"]
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    example["command"]["arguments"] = [*arguments[2:-1], {**arguments[-1], "value": f"file://{outputs}/upper.txt"}]
    worker = worker_factory(options=["--file-root", str(outputs)], runner=["docker"]).start()
    message_id = worker.submit(example)
    result = worker.result(message_id)

    assert result["status"] == "succeeded", (result["stderr"], result["error"], result["exit_code"])
    assert result["stdout"] == "RAW INPUT DATA\nFROM THE QUEUE\n"
    assert (outputs / "upper.txt").read_text() == "RAW INPUT DATA\nFROM THE QUEUE\n"
    events = worker.results_for(message_id)[:-1]
    assert [(e["status"], e.get("progress")) for e in events] == [
        ("running", None),
        ("progress", {"percent": 50.0, "message": "converting"}),
    ]


def test_image_policy_rejects_what_it_does_not_allow(
    worker_factory: WorkerFactory, tool_image: str, docker_api: APIClient
) -> None:
    worker = worker_factory(runner=["docker", "--allow-image", "local/api-worker-test-*"]).start()
    allowed = worker.submit(docker_job(tool_image, []))
    refused = worker.submit(docker_job("hub.example.org/tools/bwa:1", []))

    assert worker.result(allowed)["status"] == "succeeded"
    result = worker.result(refused)
    assert result["status"] == "rejected", result
    assert result["error"]["type"] == "image"
    assert "'hub.example.org/tools/bwa:1' is not allowed" in result["error"]["message"]
    assert not any(image.startswith("hub.example.org") for image in _image_names(docker_api))


def _image_names(api: APIClient) -> list[str]:
    return [tag for image in api.images() for tag in image.get("RepoTags") or []]


def test_an_image_the_registry_does_not_have_is_rejected_and_a_registry_down_is_an_error(
    worker_factory: WorkerFactory, tool_image: str
) -> None:
    registry = EmptyRegistry()
    try:
        worker = worker_factory(options=["--max-attempts", "1"], runner=["docker"]).start()
        missing = worker.submit(docker_job(f"{registry.address}/no/such:1", []))
        down = worker.submit(docker_job(f"127.0.0.1:{free_port()}/any/image:1", []))

        result = worker.result(missing)
        assert result["status"] == "rejected", result
        assert result["error"]["type"] == "image"
        assert f"{registry.address}/no/such:1" in result["error"]["message"]
        assert "manifest unknown" in result["error"]["message"]
        result = worker.result(down)
        assert result["status"] == "error", result
        assert result["error"]["type"] == "runner"
        assert "/any/image:1" in result["error"]["message"]
    finally:
        registry.stop()


def test_registry_credentials_come_from_the_standard_docker_config(
    worker_factory: WorkerFactory, tool_image: str, tmp_path: Path
) -> None:
    registry = EmptyRegistry("alice", "s3cret")
    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(b"alice:s3cret").decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry.address: {"auth": auth}}}))
    try:
        worker = worker_factory(runner=["docker"], environment={"DOCKER_CONFIG": str(config)}).start()
        result = worker.result(worker.submit(docker_job(f"{registry.address}/private/tool:1", [])))

        # The registry let the engine in with the worker's credentials, then had no such image.
        assert result["status"] == "rejected", result
        assert "manifest unknown" in result["error"]["message"]
        assert registry.server.password in registry.authorizations
        assert "s3cret" not in worker.log_path.read_text()
        worker.stop()

        # Without them, the image cannot be had either: rejected, naming the image.
        (config / "config.json").write_text("{}")
        worker = worker_factory(runner=["docker"], environment={"DOCKER_CONFIG": str(config)}).start()
        result = worker.result(worker.submit(docker_job(f"{registry.address}/private/tool:2", [])))
        assert result["status"] == "rejected", result
        assert f"{registry.address}/private/tool:2" in result["error"]["message"]
        assert "no basic auth credentials" in result["error"]["message"]
    finally:
        registry.stop()


def test_pull_never_rejects_an_absent_image(worker_factory: WorkerFactory, tool_image: str) -> None:
    worker = worker_factory(runner=["docker", "--pull", "never"]).start()
    present = worker.submit(docker_job(tool_image, []))
    absent = worker.submit(docker_job("local/not-built-here:1", []))

    assert worker.result(present)["status"] == "succeeded"
    result = worker.result(absent)
    assert result["status"] == "rejected", result
    assert "never pulls" in result["error"]["message"]


def test_a_planted_link_to_a_host_file_is_not_uploaded(
    worker_factory: WorkerFactory, tool_image: str, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not leak")
    store = tmp_path / "store"
    store.mkdir()
    worker = worker_factory(options=["--file-root", str(store)], runner=["docker"]).start()
    out = f"file://{store}/out"
    arguments = [
        {"type": "parameter", "name": "--symlink", "value": str(secret)},
        {"type": "output", "value": f"{out}/leak.txt"},
        {"type": "output", "name": "--outfile", "value": f"{out}/kept.txt"},
    ]
    result = worker.result(worker.submit(docker_job(tool_image, arguments)))

    assert result["status"] == "succeeded", result
    assert sorted(p.name for p in (store / "out").iterdir()) == ["kept.txt"]
    assert [(s["path"], s["reason"]) for s in result["skipped"]] == [
        (f"{out}/leak.txt", "links outside the job directory")
    ]


def test_a_container_left_by_a_killed_worker_is_removed_at_the_next_start(
    worker_factory: WorkerFactory, tool_image: str, docker_api: APIClient
) -> None:
    worker = worker_factory(runner=["docker"]).start()
    worker.submit(docker_job(tool_image, [parameter("--sleep", 120)]))
    running = wait_until(
        lambda: [c for c in worker_containers(docker_api, worker.scratch) if c["State"] == "running"],
        20,
        "the job's container to run",
    )
    assert worker.process is not None
    # Everything at once, so no process of the worker gets to clean up: all stopped first, or a
    # child could act on the parent-death signal (and remove its container) before its SIGKILL.
    supervisor = psutil.Process(worker.process.pid)
    processes = [supervisor, *supervisor.children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    for process in processes:
        process.send_signal(signal.SIGKILL)
    worker.process.wait()
    assert docker_api.inspect_container(running[0]["Id"])["State"]["Running"]

    successor = worker_factory(runner=["docker"]).start()
    successor.wait_for_log("removed containers left by a previous run")
    assert worker_containers(docker_api, worker.scratch) == []


def test_an_engine_outage_is_a_retryable_error_and_the_worker_recovers(
    worker_factory: WorkerFactory, tool_image: str, docker_api: APIClient
) -> None:
    socket_path = engine_socket_path()
    if socket_path is None:
        pytest.skip("needs an engine on a unix socket to put a proxy in front of it")
    proxy = TcpProxy(socket_path)
    try:
        worker = worker_factory(
            options=["--retry-delay", "0.5", "--max-attempts", "5"],
            runner=["docker"],
            environment={"DOCKER_HOST": f"tcp://127.0.0.1:{proxy.port}"},
        ).start()
        # The engine goes away while the job runs ...
        message_id = worker.submit(docker_job(tool_image, [parameter("--sleep", 2)]))
        wait_until(lambda: worker_containers(docker_api, worker.scratch), 20, "the job's container")
        proxy.stop()
        first = wait_until(lambda: worker.results_for(message_id), 30, "the first attempt's result")[0]
        assert (first["status"], first["final"], first["error"]["type"]) == ("error", False, "runner")
        assert "Docker engine unreachable" in first["error"]["message"]
        # ... and the next attempts fail the same way until it is back.
        wait_until(lambda: len(worker.results_for(message_id)) >= 2, 30, "a second failed attempt")
        proxy.start()

        result = worker.result(message_id, timeout=60)
        assert result["status"] == "succeeded", result
        assert worker.process is not None and worker.process.poll() is None
        # The container the outage left behind was removed once the engine answered again.
        wait_until(lambda: not worker_containers(docker_api, worker.scratch), 20, "no containers left")
    finally:
        proxy.stop()


def test_a_worker_starts_without_an_engine_and_reports_jobs_as_errors(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(
        options=["--max-attempts", "1"],
        runner=["docker"],
        environment={"DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"},
    ).start()
    worker.wait_for_log("the Docker engine cannot be reached; jobs will fail until it can")
    result = worker.result(worker.submit(docker_job("local/any:1", [])))

    assert (result["status"], result["final"], result["error"]["type"]) == ("error", True, "runner")
    assert "Docker engine unreachable while connecting" in result["error"]["message"]

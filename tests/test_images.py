"""Images against a real engine and a real registry on loopback: credentials resolved per pull
(the Docker config read again, ECR tokens from moto's ECR over HTTP), one pull per image across
the pool, the pull timeout, and the image cache."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from docker import APIClient
from docker.errors import ImageNotFound

from testkit.images import busybox_root_filesystem
from testkit.moto_server import MotoServer
from testkit.registry import LocalRegistry, registry_missing
from testkit.tcp_proxy import TcpProxy
from testkit.waiting import wait_until
from tests.support import Worker, unavailable

WorkerFactory = Callable[..., Worker]
ECR_ACCOUNT = "123456789012"  # moto's default account: its token's password is "ACCOUNT-auth-token"


@pytest.fixture
def registry(docker_api: APIClient, tmp_path: Path) -> Iterator[LocalRegistry]:
    missing = registry_missing()
    if missing is not None:
        unavailable(missing)
    directory = tmp_path / "registry"
    directory.mkdir()
    server = LocalRegistry(directory, {"alice": f"alice-{uuid.uuid4().hex}", "AWS": f"{ECR_ACCOUNT}-auth-token"})
    yield server
    server.stop()


def docker_job(image: str, script: str | None = "true") -> dict[str, Any]:
    """`script` for the busybox images' `sh -c`; None: no arguments (the tool image's own command)."""
    arguments = [] if script is None else [{"type": "parameter", "value": script}]
    return {"service": image, "queue": "docker", "command": {"arguments": arguments}}


def write_docker_config(directory: Path, registry: str, user: str, password: str) -> None:
    directory.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))


def present(api: APIClient, reference: str) -> bool:
    try:
        api.inspect_image(reference)  # type: ignore[no-untyped-call]  # untyped in the stubs
    except ImageNotFound:
        return False
    return True


def test_new_credentials_on_disk_reach_the_next_pull_and_refused_ones_reject_naming_the_registry(
    worker_factory: WorkerFactory, registry: LocalRegistry, docker_api: APIClient, tmp_path: Path
) -> None:
    image = registry.push_image(docker_api, f"private/tool-{uuid.uuid4().hex[:8]}")
    config = tmp_path / "docker-config"
    write_docker_config(config, registry.address, "alice", "not-her-password")
    worker = worker_factory(runner=["docker"], environment={"DOCKER_CONFIG": str(config)}).start()

    refused = worker.result(worker.submit(docker_job(image)))
    assert refused["status"] == "rejected", refused
    assert refused["error"]["type"] == "image"
    assert f"registry {registry.address} refused" in refused["error"]["message"]

    # The worker runs on; the file changes; the next pull uses what it says now.
    write_docker_config(config, registry.address, "alice", registry.users["alice"])
    pulled = worker.result(worker.submit(docker_job(image)))
    assert pulled["status"] == "succeeded", pulled
    log = worker.log_path.read_text()
    assert registry.users["alice"] not in log
    assert "not-her-password" not in log


def test_an_ecr_registry_gets_a_token_from_the_ecr_api(
    worker_factory: WorkerFactory, registry: LocalRegistry, docker_api: APIClient, moto: MotoServer, tmp_path: Path
) -> None:
    """moto's GetAuthorizationToken answers user AWS and ACCOUNT-auth-token, which the registry takes."""
    image = registry.push_image(docker_api, f"ecr/tool-{uuid.uuid4().hex[:8]}")
    no_config = tmp_path / "no-docker-config"
    no_config.mkdir()
    worker = worker_factory(
        runner=["docker", "--ecr-registry", registry.address], environment={"DOCKER_CONFIG": str(no_config)}
    ).start()

    result = worker.result(worker.submit(docker_job(image)))
    assert result["status"] == "succeeded", result
    [got] = worker.log_records_with("got an ECR token")
    assert got["registry"] == registry.address
    assert registry.users["AWS"] not in worker.log_path.read_text()


def test_four_jobs_naming_one_absent_image_make_one_pull(
    worker_factory: WorkerFactory, registry: LocalRegistry, docker_api: APIClient, tmp_path: Path
) -> None:
    repository = f"shared/tool-{uuid.uuid4().hex[:8]}"
    image = registry.push_image(docker_api, repository)
    config = tmp_path / "docker-config"
    write_docker_config(config, registry.address, "alice", registry.users["alice"])
    worker = worker_factory(workers=4, runner=["docker"], environment={"DOCKER_CONFIG": str(config)}).start()
    worker.wait_for_log("pool ready")

    submitted = [worker.submit(docker_job(image)) for _ in range(4)]
    assert [worker.result(message_id)["status"] for message_id in submitted] == ["succeeded"] * 4
    assert registry.manifest_requests(repository) == 1
    assert len(worker.log_records_with("pulled image")) == 1


def test_a_pull_over_the_pull_timeout_is_a_retryable_error_naming_the_image(
    worker_factory: WorkerFactory, registry: LocalRegistry, docker_api: APIClient, tmp_path: Path
) -> None:
    image = registry.push_image(docker_api, f"slow/tool-{uuid.uuid4().hex[:8]}")
    slow = TcpProxy(registry.port, latency_s=3.0)
    config = tmp_path / "docker-config"
    slow_image = image.replace(registry.address, f"127.0.0.1:{slow.port}")
    write_docker_config(config, f"127.0.0.1:{slow.port}", "alice", registry.users["alice"])
    try:
        worker = worker_factory(
            options=["--max-attempts", "1"],
            runner=["docker", "--pull-timeout", "1"],
            environment={"DOCKER_CONFIG": str(config)},
        ).start()
        result = worker.result(worker.submit(docker_job(slow_image)))
    finally:
        slow.stop()
    assert result["status"] == "error", result
    assert f"pulling image {slow_image!r} took longer than 1 s (--pull-timeout)" in result["error"]["message"]


def test_the_cache_removes_the_least_recently_used_pulled_images_past_its_cap(
    worker_factory: WorkerFactory, registry: LocalRegistry, docker_api: APIClient, tmp_path: Path
) -> None:
    """Six images of one size, a cap of three and a half: after the last pull the three least
    recently used are gone; the --keep-image one and the running job's (the oldest) stay."""
    suffix = uuid.uuid4().hex[:8]
    names = ["running", "keep", "a", "b", "c", "d"]
    images = {name: registry.push_image(docker_api, f"cache-{suffix}/{name}", marker=name) for name in names}
    cap = int(3.5 * len(busybox_root_filesystem()))
    config = tmp_path / "docker-config"
    write_docker_config(config, registry.address, "alice", registry.users["alice"])
    options = ["--image-cache-max", str(cap), "--keep-image", f"*/cache-{suffix}/keep:*", "--image-min-idle", "0"]
    worker = worker_factory(workers=2, runner=["docker", *options], environment={"DOCKER_CONFIG": str(config)}).start()

    worker.submit(docker_job(images["running"], "sleep 300"))
    wait_until(lambda: present(docker_api, images["running"]), 60, "the long job's image")
    for name in names[1:]:
        result = worker.result(worker.submit(docker_job(images[name])), timeout=60)
        assert result["status"] == "succeeded", result

    wait_until(lambda: not any(present(docker_api, images[name]) for name in "abc"), 30, "the cache to clean")
    assert all(present(docker_api, images[name]) for name in ("running", "keep", "d"))
    removed = worker.log_records_with("removed an image")
    assert [record["image"] for record in removed] == [images["a"], images["b"], images["c"]]
    assert {record["reason"] for record in removed} == {"cap"}


def test_a_pull_waits_while_the_engine_disk_stays_over_its_watermark(
    worker_factory: WorkerFactory, registry: LocalRegistry, docker_api: APIClient, tool_image: str, tmp_path: Path
) -> None:
    """A watermark of 1% that no cleaning can reach: a job whose image is present runs; one whose
    image must be pulled ends in a retryable error (not final) instead of filling the disk."""
    image = registry.push_image(docker_api, f"full/tool-{uuid.uuid4().hex[:8]}")
    config = tmp_path / "docker-config"
    write_docker_config(config, registry.address, "alice", registry.users["alice"])
    worker = worker_factory(
        runner=["docker", "--image-cache-high", "1%", "--image-cache-low", "0.5%"],
        environment={"DOCKER_CONFIG": str(config)},
    ).start()
    wait_until((worker.scratch / ".images" / "engine-disk-short").exists, 30, "the cache's first look")

    present_job = worker.submit(docker_job(tool_image, None))
    absent_job = worker.submit(docker_job(image))
    assert worker.result(present_job)["status"] == "succeeded"
    [first, *_] = wait_until(lambda: worker.results_for(absent_job) or None, 30, "the first attempt's result")
    assert (first["status"], first["final"]) == ("error", False), first
    assert "is pulled later" in first["error"]["message"]
    assert "over --image-cache-high 1%" in first["error"]["message"]
    assert not present(docker_api, image)

"""GPUs without a GPU here: devices named by --gpus are reserved one job at a time and handed to
native jobs by environment, to containers as a device request for their UUIDs."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from docker import APIClient

from assembly.children import box_gpus
from runners.container import DockerRunner
from runners.container_settings import ContainerSettings
from runners.gpus import discover_gpus
from runners.process import RunSpec
from tests.support import Worker, job

WorkerFactory = Callable[..., Worker]
PRINT_ENV = {"type": "parameter", "value": "--print-env"}


def parameter(name: str, value: object) -> dict[str, object]:
    return {"type": "parameter", "name": name, "value": value}


def environment_of(result: dict[str, object]) -> dict[str, str]:
    lines = str(result["stdout"]).splitlines()
    return dict(line.partition("=")[::2] for line in lines if "=" in line)


def test_one_device_goes_to_one_job_at_a_time_named_in_its_environment(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(workers=2, options=["--gpus", "GPU-0a1b"]).start()
    asking = job([PRINT_ENV, parameter("--sleep", 0.8)], resources={"gpus": 1})
    sent = [worker.submit(asking) for _ in range(2)]
    results = sorted((worker.result(m, timeout=60) for m in sent), key=lambda r: str(r["started_at"]))
    assert all(result["status"] == "succeeded" for result in results), results
    for earlier, later in itertools.pairwise(results):
        assert str(earlier["finished_at"]) <= str(later["started_at"]), "two jobs on one device"
    assert all(environment_of(r)["CUDA_VISIBLE_DEVICES"] == "GPU-0a1b" for r in results)
    assert all(environment_of(r)["NVIDIA_VISIBLE_DEVICES"] == "GPU-0a1b" for r in results)
    none = worker.result(worker.submit(job([PRINT_ENV])))
    assert environment_of(none)["CUDA_VISIBLE_DEVICES"] == "none"
    too_many = worker.result(worker.submit(job(resources={"gpus": 2})))
    assert too_many["status"] == "rejected"
    assert too_many["error"]["message"] == "resources.gpus: asks for 2 GPUs, more than this box has (1; --gpus)"


def test_a_container_requests_exactly_its_devices(docker_api: APIClient, tool_image: str, tmp_path: Path) -> None:
    runner = DockerRunner(ContainerSettings(worker_label=str(tmp_path)), slot=0)
    spec = RunSpec(["--sleep", "0"], tmp_path, tmp_path / "in", tmp_path / "out", tmp_path / "err", image=tool_image,
                   gpus=("GPU-0a1b", "GPU-2c3d"))  # fmt: skip
    container = runner._create(spec, has_stdin=False)
    try:
        requests = docker_api.inspect_container(container)["HostConfig"]["DeviceRequests"]
        assert [(r["Driver"], r["DeviceIDs"], r["Capabilities"]) for r in requests] == [
            ("nvidia", ["GPU-0a1b", "GPU-2c3d"], [["gpu"]])
        ]
        plain = runner._create(RunSpec(["--sleep", "0"], tmp_path, tmp_path / "in", tmp_path / "out",
                                       tmp_path / "err", image=tool_image, gpus=()), has_stdin=False)  # fmt: skip
        assert not docker_api.inspect_container(plain)["HostConfig"].get("DeviceRequests")
        docker_api.remove_container(plain, force=True)
    finally:
        docker_api.remove_container(container, force=True)


@pytest.mark.integration
def test_the_gpus_setting() -> None:
    assert box_gpus("none") == ()
    assert box_gpus("GPU-a, GPU-b,GPU-a") == ("GPU-a", "GPU-b")
    assert box_gpus("auto") == discover_gpus()  # none without a driver

"""One worker, several services (`supervisor.py --config FILE services`): native services by
name, each with its own command and ceilings, and docker jobs, from one pool and one queue."""

from __future__ import annotations

import itertools
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from testkit.moto_server import free_port
from testkit.waiting import wait_until
from tests.support import TOOL, Worker, job


def parameter(name: str, value: object) -> dict[str, object]:
    return {"type": "parameter", "name": name, "value": value}


def services_worker(tmp_path: Path, toml: str, workers: int = 2) -> Worker:
    config = tmp_path / "services.toml"
    config.write_text(toml)
    return Worker(tmp_path, workers=workers, options=["--config", str(config)], runner=["services"])


def tool_service(name: str, **limits: object) -> str:
    lines = [f"[services.{name}]", f"command = {json.dumps([sys.executable, str(TOOL), '--service-name', name])}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in limits.items()]
    return "\n".join(lines) + "\n"


def test_native_services_and_docker_jobs_from_one_pool(tmp_path: Path, tool_image: str) -> None:
    toml = tool_service("wc") + tool_service("gdal") + '[docker]\npull = "never"\n'
    worker = services_worker(tmp_path, toml).start()
    try:
        wc = worker.result(worker.submit(job(service="wc")))
        gdal = worker.result(worker.submit(job(service="gdal")))
        docker = worker.result(worker.submit(job(service=tool_image, queue="docker")), timeout=60)
        assert (wc["status"], gdal["status"], docker["status"]) == ("succeeded", "succeeded", "succeeded")
        assert "service-name=wc" in wc["stdout"] and "service-name=gdal" in gdal["stdout"]
        unknown = worker.result(worker.submit(job(service="nope")))
        assert unknown["status"] == "rejected"
        assert unknown["error"]["message"] == "service: this worker serves no native service named 'nope'"
        assert str(TOOL) not in json.dumps(unknown)  # nothing of the other services' commands
    finally:
        worker.stop()


def test_docker_messages_are_rejected_without_a_docker_table(tmp_path: Path) -> None:
    worker = services_worker(tmp_path, tool_service("wc")).start()
    try:
        result = worker.result(worker.submit(job(service="local/anything", queue="docker")))
        assert result["status"] == "rejected"
        assert result["error"]["message"] == (
            "queue: this worker runs no docker jobs (its config file has no [docker] table)"
        )
    finally:
        worker.stop()


def test_a_services_own_timeout_and_memory_apply(tmp_path: Path) -> None:
    toml = tool_service("quick", timeout="1s") + tool_service("small", memory="120M") + tool_service("free")
    worker = services_worker(tmp_path, toml).start()
    try:
        slow = worker.result(worker.submit(job([parameter("--sleep", 30)], service="quick")))
        assert (slow["status"], slow["error"]["message"]) == ("timeout", "the job ran longer than 1 s")
        hungry: dict[str, Any] = worker.result(
            worker.submit(job([parameter("--child-allocate", 200), parameter("--sleep", 30)], service="small"))
        )
        assert (hungry["status"], hungry["error"]["type"]) == ("killed", "memory")
        asks_more = worker.result(worker.submit(job(service="small", resources={"memory": "1G"})))
        assert (
            asks_more["status"] == "rejected"
            and "more than this worker's limit of 120 MiB" in (asks_more["error"]["message"])
        )
        unlimited = worker.result(worker.submit(job([parameter("--sleep", 1.5)], service="free")))
        assert unlimited["status"] == "succeeded"
    finally:
        worker.stop()


def test_max_running_caps_a_service_without_holding_the_others_back(tmp_path: Path) -> None:
    toml = tool_service("gdal", **{"max-running": 1}) + tool_service("wc")
    worker = services_worker(tmp_path, toml, workers=3).start()
    try:
        capped = [worker.submit(job([parameter("--sleep", 1.5)], service="gdal")) for _ in range(4)]
        others = [worker.submit(job([parameter("--sleep", 0.2)], service="wc")) for _ in range(2)]
        gdal = sorted((worker.result(m, timeout=60) for m in capped), key=lambda r: r["started_at"])
        wc = [worker.result(m, timeout=60) for m in others]
    finally:
        worker.stop()
    assert all(result["status"] == "succeeded" for result in [*gdal, *wc])
    for earlier, later in itertools.pairwise(gdal):
        assert earlier["finished_at"] <= later["started_at"], "two gdal jobs ran at once"
    # The wc jobs, sent behind the gdal backlog, are done before the last gdal job even starts.
    assert max(result["finished_at"] for result in wc) < gdal[-1]["started_at"]


def test_metrics_and_status_carry_the_service(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "services.toml"
    config.write_text(tool_service("wc") + tool_service("gdal"))
    worker = Worker(tmp_path, options=["--config", str(config), "--metrics-port", str(port)], runner=["services"])
    worker.start()
    try:
        assert worker.result(worker.submit(job(service="wc")))["status"] == "succeeded"
        assert worker.result(worker.submit(job(service="nope")))["status"] == "rejected"
        started = tmp_path / "started"
        message_id = worker.submit(job([parameter("--started", str(started)), parameter("--sleep", 3)], service="gdal"))
        wait_until(started.exists, 20, "the gdal job to start")
        running = wait_until(lambda: _http(port, "/status")["running"], 10, "the running job in /status")
        assert [job_["service"] for job_ in running] == ["gdal"]
        metrics = _http(port, "/metrics", json_body=False)
        assert 'api_worker_service_jobs_total{service="wc",status="succeeded"} 1.0' in metrics
        assert 'api_worker_service_jobs_total{service="native",status="rejected"} 1.0' in metrics  # not "nope"
        assert 'api_worker_service_jobs_running{service="gdal"} 1.0' in metrics
        assert worker.result(message_id)["status"] == "succeeded"
        status = wait_until(lambda: _done_gdal(port), 10, "the gdal job counted in /status")
        assert status["services"]["wc"] == {"succeeded": 1}
    finally:
        worker.stop()


def _done_gdal(port: int) -> dict[str, Any] | None:
    status: dict[str, Any] = _http(port, "/status")
    return status if status["services"].get("gdal") == {"succeeded": 1} else None


def _http(port: int, path: str, *, json_body: bool = True) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        text = response.read().decode()
    return json.loads(text) if json_body else text

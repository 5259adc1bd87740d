"""Admission by the box's capacity (pool/admission.py): a job starts only when its memory and
core reservations fit beside the running jobs'; one that never could is rejected at once."""

from __future__ import annotations

import itertools
import json
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pool.admission import NOTHING, Admission, Capacity, Reservation, total
from protocol.body import Addressing, read_addressing
from runners.limits import JobLimits
from testkit.moto_server import free_port
from testkit.waiting import wait_until
from tests.support import Worker, job, metrics

WorkerFactory = Callable[..., Worker]
GIB = 1024**3


def parameter(name: str, value: object) -> dict[str, object]:
    return {"type": "parameter", "name": name, "value": value}


def test_jobs_never_reserve_more_memory_than_the_box_has(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(workers=3, options=["--memory-capacity", "1G"]).start()
    sent = [worker.submit(job([parameter("--sleep", 0.8)], resources={"memory": "600M"})) for _ in range(3)]
    small = worker.submit(job([parameter("--sleep", 0.2)], resources={"memory": "300M"}))
    results = [worker.result(message_id, timeout=60) for message_id in sent]
    assert all(result["status"] == "succeeded" for result in results)
    spans = sorted((r["started_at"], r["finished_at"]) for r in results)
    for earlier, later in itertools.pairwise(spans):
        assert earlier[1] <= later[0], "two 600M jobs ran at once on a 1G box"
    assert worker.result(small)["status"] == "succeeded"  # 600M + 300M fit: it ran beside one
    too_big = worker.result(worker.submit(job(resources={"memory": "2G"})))
    assert too_big["status"] == "rejected"
    assert too_big["error"]["message"] == (
        "resources.memory: asks for 2 GiB, more than this box's capacity of 1 GiB (--memory-capacity)"
    )


def test_a_ceiling_above_the_capacity_is_refused_at_start(tmp_path: Path) -> None:
    worker = Worker(tmp_path, options=["--job-memory", "2G", "--memory-capacity", "1G"])
    completed = subprocess.run(worker.command(), capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 2
    assert "--job-memory of 2 GiB is more than --memory-capacity of 1 GiB: no job could start" in completed.stderr


def test_reservations_from_asks_and_ceilings() -> None:
    admission = Admission(Capacity(4 * GIB, 4.0), {"gdal": JobLimits(memory_bytes=2 * GIB, cpus=2)}, None)

    def body(**fields: object) -> Addressing:
        return read_addressing(json.dumps({"service": "gdal", "queue": "native", **fields}))

    assert admission.reservation(body()) == Reservation(2 * GIB, 2.0)
    assert admission.reservation(body(resources={"memory": "1G", "cpus": 1})) == Reservation(GIB, 1.0)
    assert admission.reservation(body(resources={"memory": "lots", "cpus": "x"})) == Reservation(2 * GIB, 2.0)
    assert admission.reservation(body(queue="docker")) == NOTHING  # this worker runs no docker jobs
    assert admission.reservation(read_addressing("not json")) == NOTHING
    running = total([Reservation(2 * GIB, 2.0)])
    assert admission.fits(running, Reservation(2 * GIB, 2.0))
    assert not admission.fits(running, Reservation(3 * GIB, 1.0))
    assert not admission.fits(running, Reservation(GIB, 3.0))
    assert admission.fits(running.plus(running), Reservation(8 * GIB, 1.0))  # never fits: handed on to be rejected
    assert admission.fits(total([Reservation(4 * GIB, 4.0)]), NOTHING)  # a job reserving nothing always fits


def test_status_and_metrics_show_capacity_and_reservations(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    port = free_port()
    worker = worker_factory(options=["--memory-capacity", "1G", "--cpu-capacity", "2", "--metrics-port", str(port)])
    worker.start()
    started = tmp_path / "started"
    message_id = worker.submit(
        job([parameter("--started", str(started)), parameter("--sleep", 3)], resources={"memory": "600M", "cpus": 1})
    )
    wait_until(started.exists, 20, "the job to start")

    def reserved() -> dict[str, Any] | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
            state: dict[str, Any] = json.loads(response.read())
        return state if state["resources"]["memory_bytes"]["reserved"] else None

    state = wait_until(reserved, 10, "the job's reservation in /status")
    assert state["resources"]["memory_bytes"] == {"capacity": GIB, "reserved": 600 * 1024**2}
    assert state["resources"]["cpus"] == {"capacity": 2.0, "reserved": 1.0}
    scraped = metrics(port)
    assert 'api_worker_reserved{resource="memory_bytes"} 6.291456e+08' in scraped
    assert 'api_worker_capacity{resource="cpus"} 2.0' in scraped
    text = worker.status_text()
    assert "reserved:   memory 600 MiB of 1 GiB, cpus 1 of 2, scratch " in text
    assert worker.result(message_id)["status"] == "succeeded"

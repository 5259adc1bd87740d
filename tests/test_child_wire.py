"""The wire between the supervisor and its children, with real workers: a child that garbles
its pipe costs only its own slot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import Worker, job

WorkerFactory = Callable[..., Worker]


def quick(number: int) -> dict[str, Any]:
    return job(command={"stdin": {"type": "pipe", "value": f"job {number}"}})


def test_a_child_that_garbles_its_pipe_is_replaced_and_the_others_go_on(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "fault-marks"
    marks.mkdir()
    faults = {"API_WORKER_TEST_FAULTS": "garbled-report:1", "API_WORKER_TEST_FAULT_MARKS": str(marks)}
    worker = worker_factory(workers=2, environment=faults).start()
    first = [worker.submit(quick(number)) for number in range(2)]
    results = [worker.result(message_id, timeout=60) for message_id in first]
    later = worker.result(worker.submit(quick(2)), timeout=60)

    assert [result["stdout"] for result in [*results, later]] == ["JOB 0", "JOB 1", "JOB 2"]
    assert all(result["status"] == "succeeded" for result in [*results, later])
    assert sorted(result["attempt"] for result in results) == [1, 2]  # the garbled one's job ran again
    (blamed,) = worker.log_records_with("child broke the wire; replacing it")
    assert "garbled message" in blamed["why"]
    assert worker.log_records_with("child died; replacing it")[0]["had_job"] is True
    assert worker.process is not None and worker.process.poll() is None  # the worker goes on

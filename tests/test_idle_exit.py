"""`--exit-when-idle`: a worker run as a batch job finishes its jobs, then exits 0 once idle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import Worker, job


@pytest.mark.integration
def test_a_worker_exits_once_idle_and_never_cuts_a_job_short(worker_factory: Any, tmp_path: Path) -> None:
    worker: Worker = worker_factory(options=["--exit-when-idle", "2"])
    message_id = worker.submit(job([{"type": "parameter", "name": "--sleep", "value": 4}]))
    worker.start()
    assert worker.wait_exit(timeout=60) == 0
    assert worker.result(message_id)["status"] == "succeeded"  # the job ran longer than the idle time
    record = worker.wait_for_log("stopping: idle long enough (--exit-when-idle)")[0]
    assert record["source"] == "idle"
    assert worker.log_records_with("idle long enough: leaving")[0]["idle_s"] >= 2

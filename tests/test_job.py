"""One job in a child (pool/child/executor.py), run in-process with real commands: the child reports what
happened and whether an error is worth another attempt; whether the attempt is final is not
its word."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal.base import Outcome
from journal.sqlite import SqliteJournal
from pool.admission import Capacity
from pool.child.executor import JobExecutor
from pool.child_settings import ChildSettings, NativeService
from pool.outcomes import OutcomePolicy
from pool.wire import DuplicateReport, JobAssignment, JobReport
from protocol.result import Status
from queues.base import BodyDefect
from runners.limits import JobLimits


def settings(tmp_path: Path, command: tuple[str, ...], journal_path: Path | None = None) -> ChildSettings:
    return ChildSettings(
        worker_kind="native", instance="test", native=(NativeService("svc", command, JobLimits(timeout_s=30.0)),),
        scratch_dir=tmp_path / "scratch",
        queue_spec=f"local:{tmp_path}/queue.sqlite3", supervisor_pid=os.getpid(), log_format="text",
        log_level="WARNING", file_roots=(), pass_env=(), kill_grace_s=1.0, transfer_concurrency=1, input_cache=None,
        job_disk_bytes=None, max_inline_output_bytes=1024, max_body_bytes=1024 * 1024,
        ceilings=JobLimits(timeout_s=30.0), capacity=Capacity(8 * 1024**3, 2.0), docker=None,
        journal_path=journal_path, progress_interval_s=1.0,
        policy=OutcomePolicy(max_attempts=3, retry_delay_s=1.0, dead_letter=False),
    )  # fmt: skip


def body(**fields: object) -> str:
    return json.dumps({"service": "svc", "queue": "native", "command": {"arguments": []}, **fields})


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[JobExecutor]:
    executor = JobExecutor(settings(tmp_path, ("sh", "-c", "echo out; exit ${1:-0}", "sh")), 0)
    yield executor
    executor.close()


def run(executor: JobExecutor, text: str, attempt: int = 1, defect: BodyDefect | None = None) -> JobReport:
    report = executor.execute(JobAssignment("m1", text, attempt, defect))
    assert isinstance(report, JobReport)
    return report


def test_a_finished_job_reports_its_facts_and_leaves_final_to_the_supervisor(executor: JobExecutor) -> None:
    report = run(executor, body(id="job-1", reply_to="replies"))
    result = report.result
    assert (result.status, result.id, result.stdout, result.exit_code) == (Status.SUCCEEDED, "job-1", "out\n", 0)
    assert report.reply_to == "replies"
    failed = run(executor, body(command={"arguments": [{"type": "parameter", "value": 3}]}))
    assert failed.result.status == Status.FAILED and failed.result.error is not None
    assert failed.result.error.message == "the command ended with exit code 3"


def test_an_unusable_reply_to_is_checked_once_and_rejects_the_job(executor: JobExecutor) -> None:
    report = run(executor, body(reply_to="no spaces allowed"))
    assert report.result.status == Status.REJECTED and report.reply_to is None
    assert report.result.error is not None and report.result.error.message.startswith("reply_to: ")


def test_a_storage_fault_is_worth_another_attempt_and_a_rejection_is_not_retried(executor: JobExecutor) -> None:
    fault = run(executor, "pointer", defect=BodyDefect("s3 is down", retryable=True))
    assert (fault.result.status, fault.retryable) == (Status.ERROR, True)
    rejected = run(executor, "pointer", defect=BodyDefect("not a pointer"))
    assert rejected.result.status == Status.REJECTED
    bad_uri = run(executor, body(command={"arguments": [{"type": "input", "value": "s3://b/../x"}]}))
    assert bad_uri.result.status == Status.REJECTED
    assert bad_uri.result.error is not None and "command.arguments[0].value" in bad_uri.result.error.message


def test_a_job_id_finished_under_another_message_is_not_run_again(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    journal.record([Outcome("m0", "job-1", 1, "succeeded", True, "receipt", "{}")])
    reader = SqliteJournal(journal.path, writer=False)
    executor = JobExecutor(settings(tmp_path, ("false",), journal.path), 0, journal=reader)
    try:
        report = executor.execute(JobAssignment("m1", body(id="job-1"), 1))
        assert report == DuplicateReport("m1", "job-1", "succeeded", "m0")
    finally:
        executor.close()
        reader.close()
        journal.close()

"""The status page's memory of finished jobs: the last 100, newest first, and an hour of tallies
per minute, failures counted apart."""

from __future__ import annotations

from pool.settling.job_history import KEPT_JOBS, KEPT_MINUTES, MAX_ERROR_CHARS, JobHistory
from protocol.result import ErrorInfo, JobResult, Status, WorkerIdentity

HOUR_START = 1_800_000_000.0 - 1_800_000_000.0 % 3600


def result(number: int, status: Status, error: str | None = None) -> JobResult:
    return JobResult(
        id=f"job-{number}", message_id=f"m-{number}", status=status, worker=WorkerIdentity("host", 1), attempt=1,
        started_at="", duration_s=1.5, service="svc", error=None if error is None else ErrorInfo("exit", error),
    )  # fmt: skip


def test_the_last_jobs_newest_first_with_their_errors_cut() -> None:
    history = JobHistory()
    for number in range(KEPT_JOBS + 5):
        history.add(result(number, Status.SUCCEEDED), final=True, now=HOUR_START + number)
    history.add(result(999, Status.FAILED, "x" * 5000), final=False, now=HOUR_START + 200)
    recent = history.recent()
    assert len(recent) == KEPT_JOBS
    assert recent[0].job_id == "job-999" and not recent[0].final and recent[0].status == "failed"
    assert recent[0].error == "x" * MAX_ERROR_CHARS
    assert recent[-1].job_id == "job-6"


def test_an_hour_of_tallies_per_minute() -> None:
    history = JobHistory()
    history.add(result(1, Status.SUCCEEDED), final=True, now=HOUR_START + 10)
    history.add(result(2, Status.TIMEOUT), final=True, now=HOUR_START + 20)
    history.add(result(3, Status.CANCELED), final=True, now=HOUR_START + 70)
    tallies = history.per_minute(now=HOUR_START + 90)
    assert len(tallies) == KEPT_MINUTES
    assert tallies[-1].minute == HOUR_START + 60
    assert (tallies[-1].finished, tallies[-1].failed) == (1, 0)  # canceled is no failure
    assert (tallies[-2].finished, tallies[-2].failed) == (2, 1)
    later = history.per_minute(now=HOUR_START + 60 * KEPT_MINUTES + 30)
    assert sum(tally.finished for tally in later) == 1  # the first minute has left the hour


def test_old_minutes_are_forgotten() -> None:
    history = JobHistory()
    for minute in range(3 * KEPT_MINUTES):
        history.add(result(minute, Status.SUCCEEDED), final=True, now=HOUR_START + minute * 60)
    assert len(history._minutes) <= KEPT_MINUTES

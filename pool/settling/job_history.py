"""The jobs this worker finished lately, for the status page: the last 100 in detail, and how
many finished (and failed) in each minute of the last hour."""

from __future__ import annotations

from collections import deque

from common.clock import SYSTEM_CLOCK, Clock
from monitoring.state import MinuteTally, RecentJob
from protocol.result import FAILURES, JobResult

KEPT_JOBS = 100
KEPT_MINUTES = 60
MAX_ERROR_CHARS = 500


class JobHistory:
    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._jobs: deque[RecentJob] = deque(maxlen=KEPT_JOBS)
        self._minutes: dict[int, list[int]] = {}  # minute (epoch // 60) -> [finished, failed]

    def add(self, result: JobResult, final: bool, now: float | None = None) -> None:
        now = self.clock.time() if now is None else now
        error = None if result.error is None else result.error.message[:MAX_ERROR_CHARS]
        status = str(result.status)
        job = RecentJob(
            result.id, result.message_id, status, final, now, result.duration_s, result.attempt, result.service, error
        )
        self._jobs.append(job)
        tally = self._minutes.setdefault(int(now // 60), [0, 0])
        tally[0] += 1
        tally[1] += result.status in FAILURES
        if len(self._minutes) > KEPT_MINUTES:
            oldest = min(self._minutes)
            del self._minutes[oldest]

    def recent(self) -> list[RecentJob]:
        """Newest first."""
        return list(reversed(self._jobs))

    def per_minute(self, now: float | None = None) -> list[MinuteTally]:
        """One tally for each of the last KEPT_MINUTES minutes, oldest first, this minute last."""
        now = self.clock.time() if now is None else now
        this_minute = int(now // 60)
        tallies = []
        for minute in range(this_minute - KEPT_MINUTES + 1, this_minute + 1):
            finished, failed = self._minutes.get(minute, (0, 0))
            tallies.append(MinuteTally(minute * 60, finished, failed))
        return tallies

"""The loop both runners watch a running job with: its wall-clock deadline, its memory and
CPU-time limits (from periodic usage samples) and its end. A runner supplies how to wait for,
sample and signal its kind of job; the decisions are taken here, once."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from runners.deadline import StopSchedule
from runners.limits import JobLimits
from runners.process import StopReason

log = logging.getLogger(__name__)
Ended = TypeVar("Ended")
Ended_co = TypeVar("Ended_co", covariant=True)


@dataclass(frozen=True)
class UsageSample:
    """A running job's usage now; None: this sample could not tell."""

    rss_bytes: int | None
    cpu_seconds: float | None


class WatchedJob(Protocol[Ended_co]):
    def ended(self) -> Ended_co | None:
        """How the job ended, once it has (never blocks)."""
        ...

    def sample(self) -> UsageSample:
        """The job's current memory and CPU time."""
        ...

    def signal(self, signum: signal.Signals) -> None:
        """Send `signum` to the whole job."""
        ...

    def wait(self, timeout_s: float) -> None:
        """Return when the job may have ended, or after `timeout_s` seconds; moves its streams
        meanwhile if the runner feeds them."""
        ...


@dataclass
class WatchReport(Generic[Ended]):
    ended: Ended
    stopped_for: StopReason | None  # set when the worker ended the job
    peak_rss_bytes: int | None  # None: never sampled
    cpu_seconds: float | None  # the last sample's


def watch(
    job: WatchedJob[Ended],
    limits: JobLimits,
    kill_grace_s: float,
    *,
    started: float,
    sample_every_s: float,
    first_sample_s: float,
) -> WatchReport[Ended]:
    """Wait for `job` to end, stopping it at its deadline (SIGTERM, then SIGKILL after the
    grace) or at once (SIGKILL) when a sample shows it over its memory or CPU-time limit.
    `started` (monotonic) is when the job was launched; the first sample is taken
    `first_sample_s` after it, then one every `sample_every_s`."""
    schedule = StopSchedule(started, limits.timeout_s, kill_grace_s)
    stopped_for: StopReason | None = None
    peak_rss: int | None = None
    cpu_seconds: float | None = None
    next_sample = started + first_sample_s
    while True:
        ended = job.ended()
        if ended is not None:
            return WatchReport(ended, stopped_for, peak_rss, cpu_seconds)
        now = time.monotonic()
        if now >= next_sample:
            sample = job.sample()
            next_sample = now + sample_every_s
            if sample.rss_bytes is not None:
                peak_rss = max(peak_rss or 0, sample.rss_bytes)
            if sample.cpu_seconds is not None:
                cpu_seconds = sample.cpu_seconds
            if stopped_for is None:
                stopped_for = _over_limit(sample, limits)
                if stopped_for is not None:
                    log.info(
                        "job exceeded a limit; killing it",
                        extra={"limit": stopped_for.value, "rss_bytes": sample.rss_bytes, "cpu_seconds": cpu_seconds},
                    )
                    schedule.cancel()
                    job.signal(signal.SIGKILL)
        stop = schedule.due(now)
        if stop is signal.SIGTERM:
            stopped_for = StopReason.TIMEOUT
            log.info("job timed out; stopping it", extra={"timeout_s": limits.timeout_s})
        if stop is not None:
            job.signal(stop)
        wake_at = min(t for t in (next_sample, schedule.next_time()) if t is not None)
        job.wait(max(0.0, wake_at - time.monotonic()))


def _over_limit(sample: UsageSample, limits: JobLimits) -> StopReason | None:
    if limits.memory_bytes is not None and sample.rss_bytes is not None and sample.rss_bytes > limits.memory_bytes:
        return StopReason.MEMORY
    if limits.cpu_seconds is not None and sample.cpu_seconds is not None and sample.cpu_seconds > limits.cpu_seconds:
        return StopReason.CPU_TIME
    return None

"""The loop both runners watch a running job with: its wall-clock deadline, its memory and
CPU-time limits (from periodic usage samples) and its end. A runner supplies how to wait for,
sample and signal its kind of job; the decisions are taken here, once."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from runners.deadline import StopSchedule
from runners.disk import DiskProbe
from runners.limits import JobLimits
from runners.process import JobLink, StopReason

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
    peak_disk_bytes: int | None = None  # None: its directory was not watched


def watch(
    job: WatchedJob[Ended],
    limits: JobLimits,
    kill_grace_s: float,
    *,
    started: float,
    sample_every_s: float,
    first_sample_s: float,
    workdir: Path | None = None,
    link: JobLink | None = None,
) -> WatchReport[Ended]:
    """Wait for `job` to end, stopping it at its deadline (SIGTERM, then SIGKILL after the
    grace) or at once (SIGKILL) when a sample shows it over its memory, CPU-time or disk limit.
    `started` (monotonic) is when the job was launched; the first sample is taken
    `first_sample_s` after it, then one every `sample_every_s`. `workdir`: the job's directory,
    whose size is watched too (at a bounded cost: runners/disk.py), and measured at the end;
    `link`: told each size measured, and asked at each look whether to stop the job."""
    watcher = _Watcher(job, limits, StopSchedule(started, limits.timeout_s, kill_grace_s))
    next_sample = started + first_sample_s
    disk = None if workdir is None else DiskProbe(workdir, next_sample)
    while True:
        ended = job.ended()
        if ended is not None:
            if disk is not None and _over_disk(disk.measure(), limits):
                watcher.over(StopReason.DISK, signal_job=False)  # it wrote too much before a walk saw it
            peak_disk = None if disk is None else disk.peak_bytes
            return WatchReport(ended, watcher.stopped_for, watcher.peak_rss, watcher.cpu_seconds, peak_disk)
        now = time.monotonic()
        if disk is not None and now >= disk.next_due:
            size = disk.measure()
            if link is not None:
                link.disk_measured(size)
            if _over_disk(size, limits):
                watcher.over(StopReason.DISK, disk_bytes=disk.peak_bytes)
        asked = None if link is None else link.stop_requested()
        if asked is not None:
            watcher.stop_for(asked, now)
        if now >= next_sample:
            watcher.sample()
            next_sample = now + sample_every_s
        watcher.keep_deadline(now)
        disk_due = None if disk is None or watcher.stopped_for is not None else disk.next_due
        wake_at = min(t for t in (next_sample, watcher.schedule.next_time(), disk_due) if t is not None)
        job.wait(max(0.0, wake_at - time.monotonic()))


class _Watcher(Generic[Ended]):
    """What `watch` keeps of a job: its peak memory, its CPU time, and why it was stopped."""

    def __init__(self, job: WatchedJob[Ended], limits: JobLimits, schedule: StopSchedule) -> None:
        self.job = job
        self.limits = limits
        self.schedule = schedule
        self.stopped_for: StopReason | None = None
        self.peak_rss: int | None = None
        self.cpu_seconds: float | None = None

    def sample(self) -> None:
        sample = self.job.sample()
        if sample.rss_bytes is not None:
            self.peak_rss = max(self.peak_rss or 0, sample.rss_bytes)
        if sample.cpu_seconds is not None:
            self.cpu_seconds = sample.cpu_seconds
        reason = _over_limit(sample, self.limits)
        if reason is not None:
            self.over(reason, rss_bytes=sample.rss_bytes, cpu_seconds=self.cpu_seconds)

    def over(self, reason: StopReason, *, signal_job: bool = True, **fields: object) -> None:
        """Over a limit: killed at once (the first reason found is the one reported)."""
        if self.stopped_for is not None:
            return
        self.stopped_for = reason
        if signal_job:
            log.info("job exceeded a limit; killing it", extra={"limit": reason.value, **fields})
            self.schedule.cancel()
            self.job.signal(signal.SIGKILL)

    def stop_for(self, reason: StopReason, now: float) -> None:
        """Asked from outside: a graceful reason stops the job like its timeout, another kills it."""
        if not reason.graceful:
            self.over(reason)
        elif self.stopped_for is None:
            self.stopped_for = reason
            log.info("stopping the job", extra={"reason": reason.value})
            self.schedule.stop_now(now)

    def keep_deadline(self, now: float) -> None:
        stop = self.schedule.due(now)
        if stop is signal.SIGTERM and self.stopped_for is None:
            self.stopped_for = StopReason.TIMEOUT
            log.info("job timed out; stopping it", extra={"timeout_s": self.limits.timeout_s})
        if stop is not None:
            self.job.signal(stop)


def _over_disk(size: int, limits: JobLimits) -> bool:
    return limits.disk_bytes is not None and size > limits.disk_bytes


def _over_limit(sample: UsageSample, limits: JobLimits) -> StopReason | None:
    if limits.memory_bytes is not None and sample.rss_bytes is not None and sample.rss_bytes > limits.memory_bytes:
        return StopReason.MEMORY
    if limits.cpu_seconds is not None and sample.cpu_seconds is not None and sample.cpu_seconds > limits.cpu_seconds:
        return StopReason.CPU_TIME
    return None

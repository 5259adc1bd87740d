"""What a running supervisor is doing, as one snapshot: for /healthz, /status, the `status`
command, the slot and in-flight gauges and systemd's STATUS line."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec

from common.sizes import format_size

# The loop wakes at least once a second; this long without an iteration means it is stuck.
DEFAULT_STALL_LIMIT_S = 30.0
STATUS_FILE_NAME = "status.json"


class RunningJob(msgspec.Struct, frozen=True):
    slot: int
    message_id: str
    attempt: int
    running_s: float
    service: str | None = None  # as its metrics label it (a configured service, or the job's kind)
    job_id: str | None = None  # once its child decoded the request
    named: str | None = None  # the service (a docker job's image) as the message names it: its sender's text
    kind: str | None = None  # native or docker
    progress_percent: float | None = None  # its latest progress, for a request with events
    progress_message: str | None = None


class WaitingJob(msgspec.Struct, frozen=True):
    """A message received and held for a slot."""

    message_id: str
    attempt: int
    waiting_s: float
    why: str  # what it waits for
    group: str | None = None


class RecentJob(msgspec.Struct, frozen=True):
    job_id: str
    message_id: str
    status: str
    final: bool  # False: an error that is retried
    finished_at: float  # epoch seconds
    duration_s: float | None
    attempt: int
    named: str | None = None  # the service as the message names it
    error: str | None = None


class MinuteTally(msgspec.Struct, frozen=True):
    minute: int  # its start, epoch seconds
    finished: int
    failed: int


class Resource(msgspec.Struct, frozen=True):
    """One of the box's resources as the worker admits jobs against it."""

    capacity: float
    reserved: float  # by the running jobs

    @property
    def free(self) -> float:
        return max(0.0, self.capacity - self.reserved)


class InputCacheState(msgspec.Struct, frozen=True):
    """The box's input cache as this worker's jobs used it since it started."""

    directory: str
    size_bytes: int  # --input-cache-size
    hits: int = 0  # inputs linked from the cache
    misses: int = 0  # inputs downloaded into it
    evicted: int = 0
    bytes_saved: int = 0  # linked, not downloaded
    bytes_fetched: int = 0

    def describe(self) -> str:
        asked = self.hits + self.misses
        ratio = f" ({100 * self.hits / asked:.0f}% hits)" if asked else ""
        return (
            f"{self.hits} hits, {self.misses} misses{ratio}, {format_size(self.bytes_saved)} saved, "
            f"{self.evicted} evicted; at most {format_size(self.size_bytes)} in {self.directory}"
        )


class WorkerState(msgspec.Struct, frozen=True):
    pid: int
    version: str
    kind: str
    queue: str
    workers: int
    started_at: float  # epoch seconds
    updated_at: float  # epoch seconds: the loop's last iteration
    busy: int
    idle: int
    starting: int  # slots whose child is not ready yet
    in_flight: int  # messages received and not yet answered: waiting, running, or their result not yet sent
    jobs: dict[str, int]  # finished jobs by status
    queue_errors: int
    child_restarts: int
    boot_failures: int  # children that died before they were ready, in a row
    stopping: bool
    running: list[RunningJob] = msgspec.field(default_factory=list)
    held: int = 0  # of the messages in flight, those waiting for a slot (prefetched, or behind their group's job)
    stall_limit_s: float = DEFAULT_STALL_LIMIT_S
    journal_problem: str | None = None  # why the journal's last write failed, until one succeeds
    thread_problems: list[str] = msgspec.field(default_factory=list)  # helper threads dead or failing
    services: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)  # finished jobs by service, status
    scratch_free_bytes: int | None = None  # free on the scratch filesystem at the last look
    scratch_reserve_bytes: int = 0  # --disk-reserve, in bytes
    scratch_problem: str | None = None  # below the reserve: no new job starts
    resources: dict[str, Resource] = msgspec.field(default_factory=dict)  # memory_bytes, cpus, gpus
    draining: bool = False  # asked to take no new jobs for now
    waiting: list[WaitingJob] = msgspec.field(default_factory=list)  # the first held messages, in order
    recent: list[RecentJob] = msgspec.field(default_factory=list)  # newest first
    per_minute: list[MinuteTally] = msgspec.field(default_factory=list)  # the last hour, oldest first
    input_cache: InputCacheState | None = None  # None: the cache is off
    notice: str | None = None  # an instance notice (Spot, rebalance, lifecycle): what it said and what it means
    scale_in_protected: bool | None = None  # None: no scale-in protection kept
    scale_in_problem: str | None = None  # why the last protection call failed, until one goes through
    waiting_for: dict[str, int] = msgspec.field(
        default_factory=dict
    )  # jobs passed on lately, by the shape they wait for

    def problems(self, now: float | None = None) -> list[str]:
        """Why the worker is unhealthy; empty when it is healthy."""
        now = time.time() if now is None else now
        found = []
        if now - self.updated_at > self.stall_limit_s:
            found.append(f"the supervisor loop has not run for {now - self.updated_at:.0f} s")
        if self.boot_failures:
            found.append(f"{self.boot_failures} children in a row died while starting")
        if self.stopping:
            found.append("stopping")
        if self.journal_problem:
            found.append(self.journal_problem)
        if self.scratch_problem:
            found.append(self.scratch_problem)
        found += self.thread_problems
        return found

    def summary(self) -> str:
        """One line for systemd's STATUS and the `status` command."""
        done = sum(self.jobs.values())
        drained = ", drained: no new jobs" if self.draining else ""
        notice = f", {self.notice}" if self.notice else ""
        return (
            f"{self.busy} of {self.workers} slots busy, {self.in_flight} messages in flight, {done} jobs done"
            f"{drained}{notice}"
        )


def status_path(scratch_dir: Path) -> Path:
    return scratch_dir / STATUS_FILE_NAME


def write_state(path: Path, state: WorkerState) -> None:
    """Atomically, so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_bytes(msgspec.json.encode(state))
    os.replace(temporary, path)


def read_state(path: Path) -> WorkerState:
    """Raises OSError when there is none, ValueError when it is unreadable."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=WorkerState)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path} is not a worker status file: {exc}") from None

"""`supervisor.py status`: a running worker's state, from its status file, for a human."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import msgspec
import psutil

from common.sizes import human_size
from monitoring.state import WorkerState, read_state

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
EXIT_NOT_RUNNING = 3


def print_status(path: Path, *, as_json: bool = False) -> int:
    try:
        state = read_state(path)
    except OSError:
        print(f"not running: no status file at {path}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except ValueError as exc:
        print(f"not running: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if as_json:
        print(msgspec.json.encode(state).decode())
    if not psutil.pid_exists(state.pid):
        if not as_json:
            print(f"not running: process {state.pid} is gone (last seen {_ago(state.updated_at)})")
        return EXIT_NOT_RUNNING
    problems = state.problems()
    if not as_json:
        print(_describe(state, problems))
    return EXIT_UNHEALTHY if problems else EXIT_HEALTHY


def _describe(state: WorkerState, problems: list[str]) -> str:
    jobs = ", ".join(f"{count} {status}" for status, count in sorted(state.jobs.items())) or "none yet"
    lines = [
        f"api-worker {state.version}, pid {state.pid}, {state.kind} jobs from {state.queue}",
        f"health:     {'ok' if not problems else 'UNHEALTHY: ' + '; '.join(problems)}",
        f"up:         {_duration(time.time() - state.started_at)} (state from {_ago(state.updated_at)})",
        f"slots:      {state.busy} busy, {state.idle} idle, {state.starting} starting, of {state.workers}",
        f"in flight:  {state.in_flight} messages ({state.held} held, waiting for a slot)",
        f"jobs done:  {jobs}",
        f"problems:   {state.queue_errors} queue errors, {state.child_restarts} children replaced",
        f"reserved:   {_resources(state)}",
        f"inputs:     cache {state.input_cache.describe() if state.input_cache else 'off'}",
    ]
    if state.scale_in_problem:
        lines.append(f"scale-in:   protection failing, retried: {state.scale_in_problem}")
    if state.waiting_for:
        passed = ", ".join(f"{count} for {shape}" for shape, count in sorted(state.waiting_for.items()))
        lines.append(f"passed on:  {passed} (too big for this box: waiting for a box of that shape)")
    for job in state.running:
        lines.append(
            f"  slot {job.slot}: message {job.message_id}, attempt {job.attempt}, running {_duration(job.running_s)}"
        )
    return "\n".join(lines)


def _resources(state: WorkerState) -> str:
    """What running jobs reserve of the box, and the scratch filesystem's free space."""
    parts = []
    memory, cpus, gpus = (state.resources.get(name) for name in ("memory_bytes", "cpus", "gpus"))
    if memory is not None:
        parts.append(f"memory {human_size(int(memory.reserved))} of {human_size(int(memory.capacity))}")
    if cpus is not None:
        parts.append(f"cpus {cpus.reserved:g} of {cpus.capacity:g}")
    if gpus is not None and gpus.capacity:
        parts.append(f"gpus {gpus.reserved:g} of {gpus.capacity:g}")
    if state.scratch_free_bytes is not None:
        reserve = human_size(state.scratch_reserve_bytes) if state.scratch_reserve_bytes else "none"
        parts.append(f"scratch {human_size(state.scratch_free_bytes)} free (reserve {reserve})")
    return ", ".join(parts) or "unknown"


def _ago(epoch: float) -> str:
    return f"{_duration(time.time() - epoch)} ago"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"

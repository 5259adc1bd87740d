"""What a command's end means for its job's result: the status, and the error if it failed."""

from __future__ import annotations

from common.sizes import format_size
from protocol.result import ErrorInfo, JobResult, Status
from runners.limits import JobLimits
from runners.process import RunOutcome, StopReason


def classify(result: JobResult, outcome: RunOutcome, limits: JobLimits) -> None:
    """What the command's end means for the job: its status, and the error if it failed."""
    result.exit_code, result.signal, result.usage = outcome.exit_code, outcome.signal, outcome.usage
    if outcome.stopped_for is StopReason.TIMEOUT:
        fail(result, Status.TIMEOUT, "timeout", f"the job ran longer than {limits.timeout_s:g} s")
    elif outcome.stopped_for is StopReason.MEMORY:
        limit = format_size(limits.memory_bytes or 0)
        fail(result, Status.KILLED, "memory", f"the job's processes used more than {limit} of memory")
    elif outcome.stopped_for is StopReason.CPU_TIME:
        fail(result, Status.KILLED, "cpu_time", f"the job used more than {limits.cpu_seconds:g} CPU-seconds")
    elif outcome.stopped_for is StopReason.SCRATCH_FULL:
        held = format_size(outcome.usage.disk_bytes or 0)
        why = f"the scratch filesystem fell below half its reserve, and the job held the most of it ({held})"
        fail(result, Status.KILLED, "disk", why)
    elif outcome.stopped_for is StopReason.DISK:
        held, limit = format_size(outcome.usage.disk_bytes or 0), format_size(limits.disk_bytes or 0)
        fail(result, Status.KILLED, "disk", f"the job's directory held {held}, more than its limit of {limit}")
    elif outcome.exit_code == 0:
        result.status = Status.SUCCEEDED
    else:
        how = f"exit code {outcome.exit_code}" if outcome.signal is None else f"signal {outcome.signal}"
        fail(result, Status.FAILED, "exit", f"the command ended with {how}")


def fail(result: JobResult, status: Status, kind: str, message: str) -> None:
    result.status = status
    result.error = ErrorInfo(kind, message)

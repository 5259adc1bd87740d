"""The limits a job runs under: what its message asks for, within the worker's ceilings."""

from __future__ import annotations

from common.sizes import human_size, parse_size
from pool.admission import Capacity
from protocol.request import JobRequest, RequestRejected
from runners.limits import JobLimits


def resolve_limits(request: JobRequest, ceilings: JobLimits, capacity: Capacity | None = None) -> JobLimits:
    """The limits a job runs under: the message may ask for less than a ceiling, never more,
    nor more than the box has (`capacity`: such a job could never start here)."""
    limits = _within_ceilings(request, ceilings)
    if capacity is not None:
        if limits.memory_bytes is not None and limits.memory_bytes > capacity.memory_bytes:
            raise RequestRejected(
                "resources.memory",
                f"asks for {human_size(limits.memory_bytes)}, more than this box's capacity of "
                f"{human_size(capacity.memory_bytes)} (--memory-capacity)",
            )
        gpus = request.resources.gpus if request.resources else None
        if gpus and gpus > len(capacity.gpus):
            raise RequestRejected(
                "resources.gpus", f"asks for {gpus} GPUs, more than this box has ({len(capacity.gpus)}; --gpus)"
            )
        if limits.cpus is not None and limits.cpus > capacity.cpus:
            raise RequestRejected(
                "resources.cpus",
                f"asks for {limits.cpus:g} CPUs, more than this box's capacity of {capacity.cpus:g} (--cpu-capacity)",
            )
    return limits


def _within_ceilings(request: JobRequest, ceilings: JobLimits) -> JobLimits:
    resources = request.resources
    memory = _size("resources.memory", resources.memory if resources else None)
    disk = _size("resources.disk", resources.disk if resources else None)
    return JobLimits(
        timeout_s=_within("timeout", request.timeout, ceilings.timeout_s, "s"),
        transfer_timeout_s=_within("transfer_timeout", request.transfer_timeout, ceilings.transfer_timeout_s, "s"),
        memory_bytes=_within_size("resources.memory", memory, ceilings.memory_bytes),
        cpus=_within("resources.cpus", resources.cpus if resources else None, ceilings.cpus, " CPUs"),
        cpu_seconds=_within(
            "resources.cpu_seconds", resources.cpu_seconds if resources else None, ceilings.cpu_seconds, " CPU-s"
        ),
        disk_bytes=_within_size("resources.disk", disk, ceilings.disk_bytes),
    )


def _size(field: str, asked: int | str | None) -> int | None:
    if asked is None:
        return None
    try:
        return parse_size(asked)
    except ValueError as exc:
        raise RequestRejected(field, str(exc)) from None


def _within(field: str, asked: float | None, ceiling: float | None, unit: str) -> float | None:
    if asked is None:
        return ceiling
    if ceiling is not None and asked > ceiling:
        raise RequestRejected(field, f"asks for {asked:g}{unit}, more than this worker's limit of {ceiling:g}{unit}")
    return asked


def _within_size(field: str, asked: int | None, ceiling: int | None) -> int | None:
    if asked is None:
        return ceiling
    if ceiling is not None and asked > ceiling:
        raise RequestRejected(
            field, f"asks for {human_size(asked)}, more than this worker's limit of {human_size(ceiling)}"
        )
    return asked

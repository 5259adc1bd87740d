"""Admission by the box's capacity: a job reserves the memory and cores it runs under, and
starts only when that fits beside the reservations of the jobs running here."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from common.sizes import parse_size
from protocol.body import Addressing
from runners.limits import JobLimits


@dataclass(frozen=True)
class Reservation:
    memory_bytes: int = 0
    cpus: float = 0.0
    gpus: int = 0

    def plus(self, other: Reservation) -> Reservation:
        if other is NOTHING:
            return self
        return Reservation(self.memory_bytes + other.memory_bytes, self.cpus + other.cpus, self.gpus + other.gpus)


NOTHING = Reservation()


def total(reservations: Iterable[Reservation]) -> Reservation:
    found = NOTHING
    for reservation in reservations:
        found = found.plus(reservation)
    return found


@dataclass(frozen=True)
class Capacity:
    memory_bytes: int
    cpus: float
    gpus: tuple[str, ...] = ()  # the box's devices (UUIDs), each for one job at a time


class Admission:
    def __init__(self, capacity: Capacity, native: Mapping[str | None, JobLimits], docker: JobLimits | None) -> None:
        """`native`: the ceilings of each native service by name (None: any service); `docker`:
        docker jobs' ceilings, if this worker runs them."""
        self.capacity = capacity
        self.native = dict(native)
        self.docker = docker
        self.free_gpus = list(capacity.gpus)

    def reservation(self, found: Addressing) -> Reservation:
        """What a job will run under, as far as its body says (its ask, else its service's
        ceiling); nothing for a body the child will reject anyway."""
        if found.queue == "docker":
            ceilings = self.docker
        elif isinstance(found.service, str):
            ceilings = self.native.get(found.service) or self.native.get(None)
        else:
            ceilings = None
        if ceilings is None:
            return NOTHING
        memory, cpus, gpus = found.asked_resources()
        asked_gpus = gpus if isinstance(gpus, int) and not isinstance(gpus, bool) and 0 <= gpus <= 1024 else 0
        reservation = Reservation(_memory(memory, ceilings.memory_bytes), _cpus(cpus, ceilings.cpus), asked_gpus)
        return NOTHING if reservation == NOTHING else reservation

    def fits(self, reserved: Reservation, candidate: Reservation) -> bool:
        """Whether `candidate` fits beside what is `reserved` (the running jobs' total). A job
        that reserves nothing always fits; one larger than the whole box fits at once: its
        child rejects it, naming what it asked and what the box has."""
        if candidate is NOTHING:
            return True
        capacity = self.capacity
        if candidate.memory_bytes > capacity.memory_bytes or candidate.cpus > capacity.cpus:
            return True
        if candidate.gpus > len(capacity.gpus):
            return True
        after = reserved.plus(candidate)
        gpus = len(capacity.gpus)
        return after.memory_bytes <= capacity.memory_bytes and after.cpus <= capacity.cpus + 1e-9 and after.gpus <= gpus

    def take_gpus(self, count: int) -> tuple[str, ...]:
        """Devices for a job starting now (`fits` said there are enough)."""
        taken, self.free_gpus = self.free_gpus[:count], self.free_gpus[count:]
        return tuple(taken)

    def give_back(self, gpus: tuple[str, ...]) -> None:
        self.free_gpus += [gpu for gpu in gpus if gpu not in self.free_gpus]


def _memory(asked: object, ceiling: int | None) -> int:
    try:
        value = parse_size(asked) if isinstance(asked, str | int) and not isinstance(asked, bool) else None
    except ValueError:
        value = None
    return value if value is not None and (ceiling is None or value <= ceiling) else (ceiling or 0)


def _cpus(asked: object, ceiling: float | None) -> float:
    usable = isinstance(asked, int | float) and not isinstance(asked, bool) and math.isfinite(asked) and asked > 0
    value = float(asked) if usable else None  # type: ignore[arg-type]
    return value if value is not None and (ceiling is None or value <= ceiling) else (ceiling or 0.0)

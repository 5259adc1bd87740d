"""The shapes of a fleet's boxes: what the largest job each can run asks for (memory, cores,
GPUs, disk), declared in a file (`--fleet-shapes`, for groups that may have no box up) or
registered by each live worker in the job table. A job too big for its box waits for a shape
that fits it; only a job no shape fits is rejected."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.sizes import human_size, parse_size
from runners.limits import JobLimits

DIMENSIONS = ("memory", "cpus", "gpus", "disk")


@dataclass(frozen=True)
class Shape:
    """A box's size. `disk_bytes` None: not bounded (the box says nothing of it)."""

    name: str
    memory_bytes: int
    cpus: float
    gpus: int = 0
    disk_bytes: int | None = None

    @classmethod
    def sized(cls, memory_bytes: int, cpus: float, gpus: int = 0, disk_bytes: int | None = None) -> Shape:
        """A shape no file names: named by its size (`3 GiB, 4 CPUs`)."""
        return cls(cls("", memory_bytes, cpus, gpus, disk_bytes).describe(), memory_bytes, cpus, gpus, disk_bytes)

    def same_size(self, other: Shape) -> bool:
        return (self.memory_bytes, self.cpus, self.gpus, self.disk_bytes) == (
            other.memory_bytes,
            other.cpus,
            other.gpus,
            other.disk_bytes,
        )

    def describe(self) -> str:
        parts = [human_size(self.memory_bytes), f"{self.cpus:g} CPUs"]
        if self.gpus:
            parts.append(f"{self.gpus} GPUs")
        if self.disk_bytes is not None:
            parts.append(f"{human_size(self.disk_bytes)} disk")
        return ", ".join(parts)


@dataclass(frozen=True)
class Ask:
    """What a job asks for, where its body says so and says it in a usable form."""

    memory_bytes: int | None = None
    cpus: float | None = None
    gpus: int | None = None
    disk_bytes: int | None = None

    def fits(self, shape: Shape) -> bool:
        return not self.too_big_for(shape)

    def too_big_for(self, shape: Shape) -> list[str]:
        """The dimensions in which this ask is more than `shape` has."""
        found = []
        if self.memory_bytes is not None and self.memory_bytes > shape.memory_bytes:
            found.append("memory")
        if self.cpus is not None and self.cpus > shape.cpus + 1e-9:
            found.append("cpus")
        if self.gpus is not None and self.gpus > shape.gpus:
            found.append("gpus")
        if self.disk_bytes is not None and shape.disk_bytes is not None and self.disk_bytes > shape.disk_bytes:
            found.append("disk")
        return found

    def shown(self, dimension: str) -> str:
        value = getattr(self, _ATTRIBUTES[dimension])
        return _show(dimension, value)


_ATTRIBUTES = {"memory": "memory_bytes", "cpus": "cpus", "gpus": "gpus", "disk": "disk_bytes"}


def _show(dimension: str, value: float | None) -> str:
    if value is None:
        return "no limit"
    if dimension in ("memory", "disk"):
        return human_size(int(value))
    return f"{value:g} CPUs" if dimension == "cpus" else f"{int(value)} GPUs"


def largest_job(memory_bytes: int, cpus: float, gpus: int, ceilings: Sequence[JobLimits]) -> Shape:
    """The largest job a box can run: its capacity, within the highest ceiling of the kinds of
    job it runs (a kind without a ceiling in a dimension leaves the capacity there). A job over
    it waits for another shape rather than being rejected by this box's child."""
    memory = _highest([ceiling.memory_bytes for ceiling in ceilings], memory_bytes)
    cores = _highest([ceiling.cpus for ceiling in ceilings], cpus)
    disk = _highest([ceiling.disk_bytes for ceiling in ceilings], None)
    return Shape.sized(int(memory or memory_bytes), cores or cpus, gpus, None if disk is None else int(disk))


def _highest(values: Sequence[float | None], most: float | None) -> float | None:
    """The highest of `values`, at most `most`; `most` if any is None (no ceiling)."""
    if not values or any(value is None for value in values):
        return most
    top = max(value for value in values if value is not None)
    return top if most is None else min(top, most)


def ask_of(resources: object) -> Ask:
    """What a body's `resources` asks for, read leniently: a value that is no usable size or
    count is left out (the child rejects the body, naming it)."""
    if not isinstance(resources, dict):
        return Ask()
    return Ask(
        memory_bytes=_size(resources.get("memory")),
        cpus=_positive(resources.get("cpus")),
        gpus=_count(resources.get("gpus")),
        disk_bytes=_size(resources.get("disk")),
    )


def _size(value: object) -> int | None:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    try:
        return parse_size(value)
    except ValueError:
        return None


def _positive(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 1024 else None


def largest_in(dimension: str, shapes: Iterable[Shape]) -> Shape | None:
    key = _ATTRIBUTES[dimension]
    return max(shapes, key=lambda shape: getattr(shape, key) or 0, default=None)


def why_none_fits(ask: Ask, shapes: list[Shape]) -> tuple[str, str]:
    """(field, text) for a rejection: per dimension in which no shape is big enough, what the
    job asks for and what the largest shape has."""
    dimensions = [d for d in DIMENSIONS if all(d in ask.too_big_for(shape) for shape in shapes)]
    dimensions = dimensions or [d for d in DIMENSIONS if any(d in ask.too_big_for(s) for s in shapes)]
    texts = []
    for dimension in dimensions:
        largest = largest_in(dimension, shapes)
        has = "nothing" if largest is None else f"{_show(dimension, getattr(largest, _ATTRIBUTES[dimension]))}"
        named = "" if largest is None else f" (shape {largest.name})"
        texts.append(f"asks for {ask.shown(dimension)}{_NOUN[dimension]}, the largest shape has {has}{named}")
    field = f"resources.{dimensions[0]}" if dimensions else "resources"
    return field, "; ".join(texts) + ": no box of the fleet can run it"


_NOUN = {"memory": " of memory", "cpus": "", "gpus": "", "disk": " of disk"}


def read_shapes_file(path: Path) -> list[Shape]:
    """The shapes a `--fleet-shapes` TOML file declares (`[shapes.NAME]` with `memory`, `cpus`,
    and optionally `gpus` and `disk`); ValueError naming the file, the shape and the field."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"--fleet-shapes {path}: cannot read it ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"--fleet-shapes {path}: not TOML ({exc})") from None
    unknown = sorted(set(data) - {"shapes"})
    if unknown:
        raise ValueError(f"--fleet-shapes {path}: unknown table {unknown[0]!r}; shapes go in [shapes.NAME]")
    tables = data.get("shapes")
    if not isinstance(tables, dict) or not tables:
        raise ValueError(f"--fleet-shapes {path}: declares no shape; write [shapes.NAME] with memory and cpus")
    return [_shape(f"--fleet-shapes {path}: [shapes.{name}]", str(name), table) for name, table in tables.items()]


def _shape(where: str, name: str, table: object) -> Shape:
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must be a table")
    unknown = sorted(set(table) - set(DIMENSIONS))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}; a shape has {', '.join(DIMENSIONS)}")
    for needed in ("memory", "cpus"):
        if needed not in table:
            raise ValueError(f"{where}: {needed} is missing")
    try:
        memory = parse_size(table["memory"])
        disk = parse_size(table["disk"]) if "disk" in table else None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    cpus = _positive(table["cpus"])
    if cpus is None:
        raise ValueError(f"{where}: cpus must be a positive number, not {table['cpus']!r}")
    gpus = table.get("gpus", 0)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or not 0 <= gpus <= 1024:
        raise ValueError(f"{where}: gpus must be a whole number from 0 to 1024, not {gpus!r}")
    return Shape(name, memory, cpus, gpus, disk)


@dataclass(frozen=True)
class LiveBox:
    """A worker of the queue as it registered itself in the job table."""

    box_id: str  # host/instance: one registration per worker
    shape: Shape
    queues: tuple[str, ...]  # the kinds of job it runs: docker, native
    services: tuple[str, ...]  # the native services it runs (empty: any its kind names)
    draining: bool
    expires_at: float  # epoch seconds; renewed by its heartbeat

    def runs(self, kind: object, service: object) -> bool:
        """Whether it runs jobs of this kind (and native service)."""
        if kind not in self.queues:
            return False
        return kind != "native" or not self.services or service in self.services


@dataclass(frozen=True)
class WaitFor:
    """A job this box can never run, that another shape can: it waits for that shape.
    `live`: a box up now can run it (else only a declared shape, perhaps scaled to zero)."""

    shape: Shape
    live: bool = False


@dataclass(frozen=True)
class FitsNoShape:
    """A job no shape of the fleet can run: rejected, naming what it asked and the largest shape."""

    field: str
    text: str


def place(
    ask: Ask, here: Shape, boxes: Iterable[LiveBox], declared: Iterable[Shape], *, kind: object, service: object
) -> WaitFor | FitsNoShape | None:
    """Where a job goes; None: here (it fits this box, or the fleet is not known). Boxes that
    drain or run other kinds of jobs are no place to wait for; declared shapes run any kind."""
    if ask.fits(here):
        return None
    declared = list(declared)
    places = [_named(box.shape, declared) for box in boxes if not box.draining and box.runs(kind, service)]
    candidates = places + declared
    fitting = [shape for shape in candidates if ask.fits(shape)]
    if fitting:
        smallest = min(fitting, key=lambda shape: (shape.memory_bytes, shape.cpus, shape.gpus))
        return WaitFor(smallest, live=any(ask.fits(shape) for shape in places))
    return FitsNoShape(*why_none_fits(ask, [here, *candidates]))


def _named(shape: Shape, declared: list[Shape]) -> Shape:
    """A live box's shape under the declared name of its size, where one has it."""
    for known in declared:
        if known.same_size(shape):
            return known
    return shape

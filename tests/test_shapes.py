"""The fleet's shapes: the declared-shapes file, what a body asks for, and where a job goes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import SettingsError, check_worker_settings, parse_settings
from fleet.shapes import Ask, FitsNoShape, LiveBox, Shape, WaitFor, ask_of, largest_job, place, read_shapes_file

GIB = 1024**3
SMALL = Shape("small", GIB, 2)
BIG = Shape("big", 3 * GIB, 4)


def box(
    shape: Shape, *, draining: bool = False, queues: tuple[str, ...] = ("native",), services: tuple[str, ...] = ()
) -> LiveBox:
    return LiveBox(f"host/{shape.name}/1", shape, queues, services, draining, expires_at=1e12)


def test_a_job_that_fits_here_stays() -> None:
    assert place(Ask(memory_bytes=GIB // 2), SMALL, [], [BIG], kind="native", service="tool") is None


def test_a_job_too_big_here_waits_for_the_smallest_shape_that_fits() -> None:
    huge = Shape("huge", 64 * GIB, 32)
    answer = place(Ask(memory_bytes=2 * GIB), SMALL, [], [huge, BIG], kind="native", service="tool")
    assert answer == WaitFor(BIG, live=False)


def test_a_live_box_is_named_by_the_declared_shape_of_its_size() -> None:
    live = box(Shape("3 GiB, 4 CPUs", 3 * GIB, 4))
    assert place(Ask(memory_bytes=2 * GIB), SMALL, [live], [BIG], kind="native", service="tool") == WaitFor(BIG, True)
    alone = place(Ask(memory_bytes=2 * GIB), SMALL, [live], [], kind="native", service="tool")
    assert isinstance(alone, WaitFor) and alone.shape.name == "3 GiB, 4 CPUs"


def test_draining_boxes_and_boxes_of_other_kinds_are_no_place_to_wait() -> None:
    ask = Ask(memory_bytes=2 * GIB)
    for other in (
        box(BIG, draining=True),
        box(BIG, queues=("docker",)),
        box(BIG, services=("other",)),
    ):
        answer = place(ask, SMALL, [other], [], kind="native", service="tool")
        assert isinstance(answer, FitsNoShape), other
        assert answer.text == (
            "asks for 2 GiB of memory, the largest shape has 1 GiB (shape small): no box of the fleet can run it"
        )


def test_a_rejection_names_each_dimension_no_shape_has() -> None:
    answer = place(Ask(memory_bytes=8 * GIB, cpus=16, gpus=2), SMALL, [], [BIG], kind="docker", service="x")
    assert isinstance(answer, FitsNoShape)
    assert answer.field == "resources.memory"
    assert answer.text == (
        "asks for 8 GiB of memory, the largest shape has 3 GiB (shape big); "
        "asks for 16 CPUs, the largest shape has 4 CPUs (shape big); "
        "asks for 2 GPUs, the largest shape has 0 GPUs (shape small): no box of the fleet can run it"
    )


def test_a_shape_that_fits_one_dimension_but_not_another_is_no_fit() -> None:
    tall = Shape("tall", 8 * GIB, 1)
    answer = place(Ask(memory_bytes=2 * GIB, cpus=4), SMALL, [], [tall], kind="native", service="tool")
    assert isinstance(answer, FitsNoShape)
    assert "memory" not in answer.field or "cpus" in answer.text


def test_what_a_body_asks_is_read_leniently() -> None:
    assert ask_of({"memory": "2G", "cpus": 1.5, "gpus": 1, "disk": "10G"}) == Ask(2 * GIB, 1.5, 1, 10 * GIB)
    assert ask_of({"memory": "lots", "cpus": -1, "gpus": True, "disk": []}) == Ask()
    assert ask_of(None) == Ask() == ask_of(["memory"])


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_no_resources_field_makes_placing_raise(resources: object) -> None:
    ask = ask_of({"memory": resources, "cpus": resources, "gpus": resources, "disk": resources})
    place(ask, SMALL, [box(BIG)], [BIG], kind=resources, service=resources)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shapes.toml"
    path.write_text(text)
    return path


def test_the_shapes_file_declares_named_shapes(tmp_path: Path) -> None:
    path = write(
        tmp_path,  # one size, one byte count
        '[shapes.big]\nmemory = "3G"\ncpus = 4\ngpus = 1\ndisk = "100G"\n'
        "[shapes.small]\nmemory = 1073741824\ncpus = 2\n",
    )
    assert read_shapes_file(path) == [Shape("big", 3 * GIB, 4, 1, 100 * GIB), Shape("small", GIB, 2)]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[shapes.big\n", "not TOML"),
        ("", "declares no shape"),
        ("[sizes.big]\nmemory = '1G'\ncpus = 1\n", "unknown table 'sizes'"),
        ("[shapes.big]\ncpus = 1\n", "[shapes.big]: memory is missing"),
        ("[shapes.big]\nmemory = 'lots'\ncpus = 1\n", "[shapes.big]: 'lots' is not a size"),
        ("[shapes.big]\nmemory = '1G'\ncpus = 0\n", "cpus must be a positive number"),
        ("[shapes.big]\nmemory = '1G'\ncpus = 1\ngpus = -1\n", "gpus must be a whole number"),
        ("[shapes.big]\nmemory = '1G'\ncpus = 1\nram = 2\n", "unknown field 'ram'"),
        ("shapes = 3\n", "declares no shape"),
    ],
)
def test_a_wrong_shapes_file_is_named_with_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="--fleet-shapes") as caught:
        read_shapes_file(path)
    assert says in str(caught.value)


def test_a_missing_shapes_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read it"):
        read_shapes_file(tmp_path / "none.toml")


def test_fleet_shapes_need_a_job_table(tmp_path: Path) -> None:
    path = write(tmp_path, "[shapes.big]\nmemory = '1G'\ncpus = 1\n")
    argv = ["--queue", f"local:{tmp_path}/q", "--fleet-shapes", str(path), "native", "--", "true"]
    settings = parse_settings(argv, {})
    with pytest.raises(SettingsError, match="need --job-table"):
        check_worker_settings(settings)  # type: ignore[arg-type]


class FakeRegister:
    queue = "https://sqs.example/1/jobs"

    def __init__(self, boxes: list[LiveBox]) -> None:
        self._boxes = boxes

    def boxes(self) -> list[LiveBox]:
        return self._boxes


def test_the_fleet_command_lists_live_boxes_only() -> None:
    import io
    import time

    from client.fleet import print_fleet

    now = time.time()
    found = [
        LiveBox("h1/big/7", Shape.sized(3 * GIB, 4, 1), ("docker",), (), True, now + 30),
        LiveBox("h2/gone/8", Shape.sized(GIB, 2), ("native",), ("tool",), False, now - 1),
        LiveBox("h3/small/9", Shape.sized(GIB, 2), ("native",), ("tool",), False, now + 50),
    ]
    out = io.StringIO()
    assert print_fleet(FakeRegister(found), as_json=False, out=out) == 0  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert lines[0] == "2 live boxes of https://sqs.example/1/jobs:"
    assert lines[1].startswith("  h1/big/7: 3 GiB, 4 CPUs, 1 GPUs; docker; draining; renewed within")
    assert lines[2].startswith("  h3/small/9: 1 GiB, 2 CPUs; native (tool); taking jobs;")
    empty = io.StringIO()
    print_fleet(FakeRegister([]), as_json=False, out=empty)  # type: ignore[arg-type]
    assert empty.getvalue() == "no live box of https://sqs.example/1/jobs in the job table\n"


def test_the_largest_job_is_the_capacity_within_the_highest_ceiling() -> None:
    from runners.limits import JobLimits

    assert largest_job(3 * GIB, 4, 1, []) == Shape.sized(3 * GIB, 4, 1)
    assert largest_job(3 * GIB, 4, 0, [JobLimits(memory_bytes=GIB, cpus=1, disk_bytes=10 * GIB)]) == Shape.sized(
        GIB, 1, 0, 10 * GIB
    )
    two_services = [JobLimits(memory_bytes=GIB), JobLimits(memory_bytes=2 * GIB, cpus=8)]
    assert largest_job(3 * GIB, 4, 0, two_services) == Shape.sized(2 * GIB, 4, 0)  # one without a cpus ceiling
    assert largest_job(3 * GIB, 4, 0, [JobLimits(memory_bytes=8 * GIB)]) == Shape.sized(3 * GIB, 4, 0)
    assert largest_job(3 * GIB, 4, 0, [JobLimits(), JobLimits(memory_bytes=GIB)]).memory_bytes == 3 * GIB

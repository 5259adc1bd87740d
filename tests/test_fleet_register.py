"""The fleet's boxes in the job table (moto's DynamoDB over HTTP), and the heartbeat that keeps
this box's entry: long-dead entries are pruned, a table that cannot be reached keeps the last
list and says so once, and the entry says whether the worker drains."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from fleet.shapes import LiveBox, Shape
from journal.fleet_table import PRUNE_AFTER_S, FleetRegister, WaitMarks, live
from journal.job_table import JobTable, TableUnreachable
from pool.upkeep.fleet_shapes import FleetShapes
from testkit.moto_server import MotoServer, create_job_table
from testkit.waiting import wait_until

GIB = 1024**3


def box(box_id: str, expires_at: float, *, draining: bool = False) -> LiveBox:
    return LiveBox(box_id, Shape.sized(GIB, 2, 0, 10 * GIB), ("native",), ("tool",), draining, expires_at)


@pytest.fixture
def table(moto: MotoServer) -> JobTable:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    create_job_table(name)
    return JobTable(name)


@pytest.mark.integration
def test_boxes_register_read_back_and_the_long_dead_are_pruned(table: JobTable) -> None:
    register = FleetRegister(table, "https://sqs.example/1/jobs")
    now = time.time()
    register.register(box("h/dead/1", now - PRUNE_AFTER_S - 1))
    register.register(box("h/late/2", now - 1))
    assert [found.box_id for found in register.boxes()] == ["h/dead/1", "h/late/2"]
    assert register.boxes()[0] == box("h/dead/1", now - PRUNE_AFTER_S - 1)  # every field as written

    register.register(box("h/live/3", now + 60), dead=["h/dead/1"])
    assert [found.box_id for found in register.boxes()] == ["h/late/2", "h/live/3"]
    assert [found.box_id for found in live(register.boxes(), now)] == ["h/live/3"]
    register.leave("h/live/3")
    register.leave("h/never/4")  # never registered: nothing to do
    assert [found.box_id for found in register.boxes()] == ["h/late/2"]
    assert FleetRegister(table, "https://sqs.example/1/other").boxes() == []  # one item per queue


@pytest.mark.integration
def test_a_jobs_wait_is_kept_in_its_item(table: JobTable) -> None:
    marks = WaitMarks(table)
    assert marks.wait_of("job").since is None
    marks.passed("job", "m-1", "big", None)
    marks.passed("job", "m-2", "big", "https://sqs.example/1/big")
    wait = marks.wait_of("job")
    assert wait.since is not None and time.time() - wait.since < 60
    assert (wait.passed_on, wait.handed_on) == (frozenset({"m-1", "m-2"}), "https://sqs.example/1/big")
    assert table.state("job")["waiting_for"] == "big" and table.state("job")["passes"] == 2


class FlakyRegister:
    """A register whose table goes away and comes back."""

    def __init__(self) -> None:
        self.queue = "q"
        self.down = False
        self.registered: list[LiveBox] = []
        self.beat = threading.Event()

    def register(self, found: LiveBox, dead: list[str] | None = None) -> None:
        self.beat.set()
        if self.down:
            raise TableUnreachable("job table t: update_item failed: connection refused")
        self.registered.append(found)

    def boxes(self) -> list[LiveBox]:
        return [*self.registered[-1:], box("h/other/9", time.time() + 60)]

    def leave(self, box_id: str) -> None:
        raise TableUnreachable("job table t: update_item failed: connection refused")


def test_the_heartbeat_keeps_the_last_list_while_the_table_is_away(caplog: pytest.LogCaptureFixture) -> None:
    register, draining = FlakyRegister(), [False]
    shapes = FleetShapes(register, box("h/me/1", 0), heartbeat_s=0.01, draining=lambda: draining[0])  # type: ignore[arg-type]
    caplog.set_level(logging.INFO)
    shapes.start()
    try:
        wait_until(shapes.others, 10, "the other box to be read")
        assert [found.box_id for found in shapes.others()] == ["h/other/9"]  # never itself
        draining[0] = True
        wait_until(lambda: register.registered[-1].draining, 10, "a beat saying it drains")
        assert register.registered[-1].expires_at > time.time()

        register.down = True
        wait_until(shapes.problem, 10, "the table's absence to show")
        assert "cannot register this box's shape in the job table" in str(shapes.problem())
        register.beat.clear()
        wait_until(register.beat.is_set, 10, "another beat")
        assert [found.box_id for found in shapes.others()] == ["h/other/9"]  # the last list is kept
        register.down = False
        wait_until(lambda: shapes.problem() is None, 10, "the table to be back")
    finally:
        shapes.stop()  # its leave fails: logged, never raised
    said = [record.getMessage() for record in caplog.records]
    assert said.count("cannot register this box's shape in the job table") == 1
    assert "this box's shape is registered in the job table again" in said
    assert "could not remove this box from the fleet; it expires" in said

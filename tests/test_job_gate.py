"""The claim gate against a fake job table: each answer the table can give, and what the gate
makes of it (run, canceled, finished elsewhere, held elsewhere, stale), including a renewal that
answers after its job settled."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from journal.job_table import Claim, Refusal, StoredResult, TableUnreachable
from pool.child.gate import (
    Canceled,
    ClaimLost,
    FinishedElsewhere,
    GateSettings,
    Go,
    HeldElsewhere,
    JobGate,
)
from protocol.cancel import CancelRequest
from testkit.waiting import wait_until

CANCEL = CancelRequest("j1", "wrong inputs", "ops@box", 1.0)
STORED = StoredResult("m0", 1, '{"message_id": "m0", "attempt": 1}')


@dataclass
class FakeTable:
    """Answers as the test says: each call's answer, or TableUnreachable when `down`."""

    claim_answer: Claim | Refusal = field(default_factory=lambda: Claim("j1", 1))
    renew_answer: bool = True
    finish_answer: bool = True
    down: bool = False
    renew_started: threading.Event = field(default_factory=threading.Event)
    renew_release: threading.Event | None = None  # a renewal waits for it: a stalled call
    calls: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise TableUnreachable("job table jobs: connection refused")

    def claim(self, job_id: str, message_id: str, owner: str, lease_s: float) -> Claim | Refusal:
        self._call("claim")
        return self.claim_answer

    def renew(self, claim: Claim, lease_s: float) -> bool:
        self.renew_started.set()
        if self.renew_release is not None:
            assert self.renew_release.wait(10)
        self._call("renew")
        return self.renew_answer

    def give_back(self, claim: Claim) -> bool:
        self._call("give_back")
        return True

    def finish(self, claim: Claim, status: str, result_json: str, retention_s: float) -> bool:
        self._call("finish")
        return self.finish_answer

    def requested(self, job_ids: Sequence[str]) -> dict[str, CancelRequest]:
        self._call("requested")
        return {}

    def request(self, cancel: CancelRequest) -> None:
        self._call("request")

    def forget(self, job_id: str, requested_before: float) -> None:
        self._call("forget")
        self.forgotten.append(job_id)


class Link:
    """A child's link as the lease keeper sees it: each job's stop is its own."""

    def __init__(self) -> None:
        self.job = 0
        self.lost: list[int] = []

    def on_claim_lost(self) -> Callable[[], None]:
        job = self.job
        return lambda: self.lost.append(job)


def gate(table: FakeTable, problems: list[str | None] | None = None, renew_every_s: float = 60.0) -> JobGate:
    settings = GateSettings(marks=table, table=table, lease_s=120.0, renew_every_s=renew_every_s)  # type: ignore[arg-type]
    return JobGate(settings, "box-a/1/2", (problems if problems is not None else []).append)


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (Claim("j1", 3), Go(Claim("j1", 3))),
        (Claim("j1", 1, CANCEL), Canceled(CANCEL, Claim("j1", 1, CANCEL))),
        (Refusal("succeeded", "m0", result=STORED), FinishedElsewhere("succeeded", "m0", STORED)),
        (Refusal("succeeded", "m0"), FinishedElsewhere("succeeded", "m0", None)),
        (Refusal(owner="box-b/1/2/3", lease_left_s=42.0), HeldElsewhere("box-b/1/2/3", 42.0)),
    ],
    ids=[
        "claimed",
        "canceled before it started",
        "finished, result kept",
        "finished, none kept",
        "held by a live owner",
    ],
)
def test_each_answer_to_a_claim_is_its_verdict(answer: Any, verdict: Any) -> None:
    assert gate(FakeTable(claim_answer=answer)).admit("j1", "m1") == verdict


def test_with_the_table_down_the_job_runs_without_a_claim_and_the_problem_is_told_once() -> None:
    table, problems = FakeTable(down=True), list[str | None]()
    job_gate = gate(table, problems)
    assert job_gate.admit("j1", "m1") == Go(None)
    assert job_gate.admit("j2", "m2") == Go(None)
    assert problems == ["job table jobs: connection refused"]
    table.down = False
    assert job_gate.admit("j3", "m3") == Go(Claim("j1", 1))
    assert problems == ["job table jobs: connection refused", None]


@pytest.mark.parametrize(
    ("final", "finish_answer", "calls", "stale"),
    [
        (True, True, ["finish"], False),
        (False, True, ["give_back"], False),
        (True, False, ["finish"], True),  # taken over meanwhile: nothing of it is published
    ],
    ids=["final outcome stored", "retry gives the claim back", "a lapsed claim is stale"],
)
def test_settling_stores_the_outcome_or_gives_the_claim_back(
    final: bool, finish_answer: bool, calls: list[str], stale: bool
) -> None:
    table = FakeTable(finish_answer=finish_answer)
    job_gate = gate(table)
    if stale:
        with pytest.raises(ClaimLost):
            job_gate.settle("j1", Claim("j1", 1), "succeeded", "{}", final)
    else:
        job_gate.settle("j1", Claim("j1", 1), "succeeded", "{}", final)
    assert table.calls == calls


def test_a_job_settled_without_a_claim_drops_its_cancel_requests() -> None:
    table = FakeTable()
    gate(table).settle("j1", None, "canceled", "{}", final=True)
    gate(table).settle("j2", None, "error", "{}", final=False)  # retried: its request stays
    assert table.forgotten == ["j1"]


def test_a_lost_claim_stops_its_job() -> None:
    table, link = FakeTable(renew_answer=False), Link()
    job_gate = gate(table, renew_every_s=0.01)
    with job_gate.leased(Claim("j1", 1), link):
        wait_until(lambda: link.lost, 10, "the keeper to find the claim gone")
    assert link.lost == [0]


def test_a_renewal_that_answers_after_its_job_settled_stops_nothing() -> None:
    release = threading.Event()
    table, link = FakeTable(renew_answer=False, renew_release=release), Link()
    job_gate = gate(table, renew_every_s=0.01)
    with job_gate.leased(Claim("j1", 1), link):
        assert table.renew_started.wait(10)  # the renewal is out, and hangs
    link.job += 1  # the child's next job
    release.set()
    wait_until(lambda: "renew" in table.calls, 10, "the stalled renewal to answer")
    assert link.lost == []

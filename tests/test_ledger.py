"""The ledger (pool/settling/ledger.py) with a real journal, courier and embedded queue: outcomes are
journaled before they go out, finished jobs are answered from the journal, and what a previous
run left undelivered goes out at start."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal.health import JournalHealth
from journal.sqlite import SqliteJournal
from pool.outcomes import OutcomePolicy, new_result
from pool.settling.courier import ResultCourier
from pool.settling.destinations import Destinations
from pool.settling.ledger import Ledger
from pool.settling.outbox import InlineOutbox
from pool.wire import JobReport
from protocol.result import Status, WorkerIdentity
from queues.local import RESULTS_QUEUE_NAME, LocalQueue

VISIBILITY_S = 30.0
POLICY = OutcomePolicy(max_attempts=3, retry_delay_s=10.0, dead_letter=False)


class Parts:
    def __init__(self, tmp_path: Path) -> None:
        self.queue = LocalQueue(tmp_path / "queue.sqlite3")
        self.results = self.queue.sibling(RESULTS_QUEUE_NAME)
        self.journal = SqliteJournal(tmp_path / "journal.sqlite3")
        health = JournalHealth(self.journal.location)
        self.courier = ResultCourier(
            self.queue, Destinations(self.queue, self.results), InlineOutbox(), journal=self.journal, health=health
        )
        self.ledger = Ledger(self.journal, health, self.courier, retention_s=3600)

    def finish(self, status: Status = Status.SUCCEEDED) -> str:
        """Receive a job and record its outcome as a child's report would have it."""
        [message] = self.queue.receive(1, 0, VISIBILITY_S)
        result = new_result(message.message_id, message.receive_count, WorkerIdentity("host", 1))
        result.status = status
        outcome, _ = POLICY.of_report(message, JobReport(result, True, None))
        self.ledger.add(outcome, time.monotonic() + VISIBILITY_S)
        return message.message_id


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    built = Parts(tmp_path)
    yield built
    built.ledger.stop()
    built.journal.close()


def test_an_outcome_is_journaled_then_delivered_and_its_message_deleted(parts: Parts) -> None:
    parts.queue.send("job")
    message_id = parts.finish()
    assert parts.ledger.next_due() is not None  # due at once
    parts.ledger.record()
    assert parts.ledger.next_due() is None
    assert parts.journal.finished([message_id])[message_id].status == "succeeded"
    parts.courier.flush(force=True)
    [result] = parts.results.receive(1, 0, VISIBILITY_S)
    assert json.loads(result.body)["message_id"] == message_id
    assert parts.queue.count() == 0
    assert parts.journal.unsettled() == []


def test_a_message_whose_job_finished_is_answered_from_the_journal_not_run(parts: Parts) -> None:
    parts.queue.send_batch(["finished before", "new"])
    finished, new = parts.queue.receive(2, 0, VISIBILITY_S)
    # An earlier attempt finished, and its delete was lost: the journal has it, the queue too.
    result = new_result(finished.message_id, 1, WorkerIdentity("host", 1))
    result.status = Status.SUCCEEDED
    parts.journal.record([POLICY.of_report(finished, JobReport(result, True, None))[0]])
    kept = parts.ledger.answer_finished([finished, new], time.monotonic() + VISIBILITY_S)
    assert kept == [new]
    parts.courier.flush(force=True)
    assert parts.queue.count() == 1  # the finished one is deleted; the new one waits for its job
    assert parts.results.count() == 0  # nothing more is sent for a duplicate


def test_what_a_previous_run_left_undelivered_goes_out_at_start(tmp_path: Path) -> None:
    before = Parts(tmp_path)
    before.queue.send("job")
    message_id = before.finish()
    journal_only = before.ledger
    before.courier.flush = lambda **_: None  # type: ignore[method-assign]  # the run stops before sending
    journal_only.record()
    assert [o.message_id for o in before.journal.unsettled()] == [message_id]
    before.journal.close()
    after = Parts(tmp_path)
    try:
        after.ledger.start()
        [result] = after.results.receive(1, 0, VISIBILITY_S)
        assert json.loads(result.body)["message_id"] == message_id
        assert after.journal.unsettled() == []
    finally:
        after.ledger.stop()
        after.journal.close()


def test_the_pruner_thread_survives_a_failure_and_shows_it(parts: Parts, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken(*_: object) -> int:
        calls.append(time.monotonic())
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(parts.journal, "prune", broken)
    ledger = Ledger(parts.journal, JournalHealth(parts.journal.location), parts.courier, retention_s=0.01)
    ledger.start()
    try:
        deadline = time.monotonic() + 15
        while len(calls) < 2 and time.monotonic() < deadline:  # failed, and ran again
            time.sleep(0.05)
        assert len(calls) >= 2
        problem = ledger.problem()
        assert problem is not None and "journal-pruner thread is failing" in problem and "disk on fire" in problem
    finally:
        ledger.stop()

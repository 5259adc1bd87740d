"""The supervisor built by hand from real parts of the test's choosing (as the composition root
builds them): an embedded queue, real children running `true`, the journal; stopped by a real
SIGTERM once the job's result is in."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal.health import JournalHealth
from journal.sqlite import SqliteJournal
from monitoring.monitor import Monitor
from pool.admission import Capacity
from pool.child_settings import ChildSettings, NativeService
from pool.holding.custody import Custody
from pool.holding.intake import PollingIntake
from pool.holding.prefetch import NO_PREFETCH, Prefetch
from pool.outcomes import OutcomePolicy
from pool.parts import SupervisorParts, SupervisorSettings
from pool.settling.courier import ResultCourier
from pool.settling.destinations import Destinations
from pool.settling.job_ends import JobEnds
from pool.settling.job_history import JobHistory
from pool.settling.ledger import Ledger
from pool.settling.outbox import InlineOutbox
from pool.slots import SlotTable
from pool.supervisor import EXIT_OK, Supervisor
from pool.upkeep.scratch_space import ScratchSpace
from pool.waker import Waker
from queues.base import POLL_INTERVAL_S
from queues.local import RESULTS_QUEUE_NAME, LocalQueue
from runners.limits import JobLimits

VISIBILITY_S = 30.0


def child_settings(tmp_path: Path, queue: LocalQueue) -> ChildSettings:
    return ChildSettings(
        worker_kind="native", instance="test", native=(NativeService(None, ("true",), JobLimits(timeout_s=60.0)),),
        scratch_dir=tmp_path / "scratch",
        queue_spec=queue.spec, supervisor_pid=os.getpid(), log_format="text", log_level="WARNING",
        file_roots=(), pass_env=(), kill_grace_s=1.0, transfer_concurrency=1, input_cache=None,
        job_disk_bytes=None,
        max_inline_output_bytes=1024, max_body_bytes=1024 * 1024, ceilings=JobLimits(timeout_s=60.0),
        capacity=Capacity(8 * 1024**3, 2.0), docker=None, journal_path=None, progress_interval_s=1.0,
        policy=OutcomePolicy(max_attempts=3, retry_delay_s=1.0, dead_letter=False),
    )  # fmt: skip


@pytest.fixture
def signals_restored() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("signals_restored")
def test_a_supervisor_of_hand_built_parts_runs_a_job_and_stops_on_sigterm(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "queue.sqlite3")
    results = queue.sibling(RESULTS_QUEUE_NAME)
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    outbox, waker, health = InlineOutbox(), Waker(), JournalHealth(journal.location)
    courier = ResultCourier(queue, Destinations(queue, results), outbox, journal=journal, health=health)
    slots = SlotTable(child_settings(tmp_path, queue), 1, job_deadline_s=None)
    custody = Custody(queue, outbox, VISIBILITY_S)
    ledger = Ledger(journal, health, courier, retention_s=3600)
    policy = OutcomePolicy(max_attempts=3, retry_delay_s=1.0, dead_letter=False)
    prefetch, history = Prefetch(NO_PREFETCH, 1), JobHistory()
    space = ScratchSpace(tmp_path, 0, slots, custody)
    parts = SupervisorParts(
        queue=queue,
        slots=slots,
        custody=custody,
        intake=PollingIntake(queue, visibility_timeout=VISIBILITY_S, poll_interval_s=POLL_INTERVAL_S),
        outbox=outbox,
        courier=courier,
        ledger=ledger,
        policy=policy,
        prefetch=prefetch,
        monitor=Monitor(tmp_path / "status.json"),
        waker=waker,
        space=space,
        images=None,
        cancels=None,
        fleet=None,
        upkeep=(space,),
        history=history,
        ends=JobEnds(custody, ledger, policy, prefetch, None, frozenset(), history),
    )
    supervisor = Supervisor(SupervisorSettings(shutdown_grace_s=10.0, stall_limit_s=30.0), parts)
    message_id = queue.send(json.dumps({"service": "s", "queue": "native", "command": {"arguments": []}}))
    answers: list[dict[str, object]] = []

    def stop_once_answered() -> None:
        # A queue of its own: the embedded queue keeps one connection per thread.
        mine = LocalQueue(tmp_path / "queue.sqlite3", RESULTS_QUEUE_NAME)
        deadline = time.monotonic() + 60
        while not answers and time.monotonic() < deadline:
            answers.extend(json.loads(m.body) for m in mine.receive(1, 1, VISIBILITY_S))
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=stop_once_answered, daemon=True)
    watcher.start()
    try:
        assert supervisor.run() == EXIT_OK
    finally:
        watcher.join(timeout=5)
        journal.close()
    assert [(a["message_id"], a["status"], a["final"]) for a in answers] == [(message_id, "succeeded", True)]
    assert queue.count() == 0
    assert supervisor.state().stopping and supervisor.state().busy == 0

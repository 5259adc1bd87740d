"""Message groups: one job of a group at a time, in order, groups side by side; on SQS FIFO
queues (moto's server, which locks groups) and on the embedded queue."""

from __future__ import annotations

import itertools
import json
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from queues.base import OutgoingMessage, QueueError, VisibilityChange
from queues.local import LocalQueue
from queues.sqs import SqsQueue
from testkit.moto_server import MotoServer
from testkit.tcp_proxy import TcpProxy
from testkit.waiting import wait_until
from tests.support import REPO, SUPERVISOR, Worker, job, new_queue

WorkerFactory = Callable[..., Worker]


def sleeper(seconds: float, *extra: dict[str, Any]) -> dict[str, Any]:
    return job([{"type": "parameter", "name": "--sleep", "value": seconds}, *extra])


def assert_in_order(results: list[dict[str, Any]]) -> None:
    """Each job of a group started only once the one before it had finished."""
    for earlier, later in itertools.pairwise(results):
        assert later["started_at"] >= earlier["finished_at"], (earlier, later)


def overlapped(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> bool:
    return any(
        max(a["started_at"], b["started_at"]) < min(a["finished_at"], b["finished_at"]) for a in first for b in second
    )


def fifo_worker(sqs_worker: WorkerFactory, sqs: Any, **kwargs: Any) -> Worker:
    return sqs_worker(
        queue=new_queue(sqs, "jobs", FifoQueue="true"),
        result_queue=new_queue(sqs, "results", FifoQueue="true"),
        **kwargs,
    )


# --- the embedded queue ----------------------------------------------------------------


def test_the_embedded_queue_gives_out_one_message_of_a_group_at_a_time_in_order(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "queue.sqlite3")
    queue.send_batch([OutgoingMessage("a1", "a"), OutgoingMessage("a2", "a"), OutgoingMessage("b1", "b"), "free"])

    first = queue.receive(10, 0, visibility_timeout=30)
    assert [(m.body, m.group_id) for m in first] == [("a1", "a"), ("b1", "b"), ("free", None)]
    assert queue.receive(10, 0, visibility_timeout=30) == []  # a2 waits for a1
    # a1 to be retried later: the group stays locked, and a1 comes back before a2.
    queue.change_visibility([VisibilityChange(first[0].receipt, 0)])
    again = queue.receive(10, 0, visibility_timeout=30)
    assert [m.body for m in again] == ["a1"]
    queue.delete([again[0].receipt])
    assert [m.body for m in queue.receive(10, 0, visibility_timeout=30)] == ["a2"]


def test_a_queue_file_from_before_groups_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT"
            " NULL, body TEXT NOT NULL, sent_at REAL NOT NULL, visible_at REAL NOT NULL, receive_count INTEGER NOT"
            " NULL DEFAULT 0, receipt_token TEXT);"
            "INSERT INTO messages (queue, message_id, body, sent_at, visible_at) VALUES ('jobs', 'm1', 'old', 0, 0);"
        )
    queue = LocalQueue(path)
    queue.send(OutgoingMessage("new", "g"))
    assert [(m.body, m.group_id) for m in queue.receive(10, 0, visibility_timeout=30)] == [("old", None), ("new", "g")]


def test_embedded_queue_groups_run_in_order_and_side_by_side(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(workers=4)
    submitted: dict[str, list[str]] = {"a": [], "b": []}
    for _ in range(4):
        for group, ids in submitted.items():
            completed = _submit_cli(worker, sleeper(0.3), "--group", group)
            assert completed.returncode == 0, completed.stderr
            ids.append(json.loads(completed.stdout)["message_id"])
    worker.start()  # all queued: the two groups can only overlap if the worker runs them side by side

    results = {group: [worker.result(m) for m in ids] for group, ids in submitted.items()}
    for group, group_results in results.items():
        assert [r["status"] for r in group_results] == ["succeeded"] * 4
        assert_in_order(group_results)
        assert {worker.result_groups[m] for m in submitted[group]} == {group}
    assert overlapped(results["a"], results["b"])


@pytest.mark.parametrize(
    ("group", "problem"),
    [("g" * 129, "at most 128 characters"), ("a group", "only letters, digits and ASCII punctuation")],
)
def test_submit_refuses_a_group_sqs_would_not_take(worker_factory: WorkerFactory, group: str, problem: str) -> None:
    worker = worker_factory()
    completed = _submit_cli(worker, sleeper(0), "--group", group)
    assert completed.returncode == 2
    assert problem in completed.stderr
    assert worker.jobs.count() == 0


def test_submit_refuses_a_group_on_a_standard_sqs_queue(sqs_worker: WorkerFactory) -> None:
    worker = sqs_worker()
    completed = _submit_cli(worker, sleeper(0), "--group", "g")
    assert completed.returncode == 2
    assert "--group needs a FIFO queue" in completed.stderr


# --- SQS FIFO queues ---------------------------------------------------------------------


def test_sqs_fifo_groups_run_in_order_side_by_side_and_results_keep_their_group(
    sqs_worker: WorkerFactory, sqs: Any
) -> None:
    worker = fifo_worker(sqs_worker, sqs, workers=4)
    submitted = {group: [worker.submit(sleeper(0.4), group) for _ in range(6)] for group in ("a", "b")}
    worker.start()

    results = {group: [worker.result(m, timeout=60) for m in ids] for group, ids in submitted.items()}
    for group, group_results in results.items():
        assert [r["status"] for r in group_results] == ["succeeded"] * 6
        assert_in_order(group_results)
        assert {worker.result_groups[m] for m in submitted[group]} == {group}
    assert overlapped(results["a"], results["b"])


def test_a_retried_job_keeps_its_group_in_order(sqs_worker: WorkerFactory, sqs: Any, tmp_path: Path) -> None:
    """The second job's child dies under it: it is retried, and the group's later jobs, held
    meanwhile, are handed back and run after it, in order."""
    worker = fifo_worker(sqs_worker, sqs, workers=4).start()
    started, marker = tmp_path / "started", tmp_path / "killed-once"
    ids = [worker.submit(sleeper(1.0, {"type": "parameter", "name": "--started", "value": str(started)}), "g")]
    wait_until(started.exists, 30, "the first job to start")
    # Received together once the first is done: the second runs, the last two wait for it.
    kill_once = {"type": "parameter", "name": "--kill-parent-once", "value": str(marker)}
    ids += [worker.submit(message, "g") for message in (sleeper(0.2, kill_once), sleeper(0.2), sleeper(0.2))]

    results = [worker.result(m, timeout=60) for m in ids]
    assert [r["status"] for r in results] == ["succeeded"] * 4
    assert results[1]["attempt"] == 2 and marker.exists()
    assert_in_order(results)
    first_attempt = worker.results_for(ids[1])[0]
    assert (first_attempt["status"], first_attempt["final"]) == ("error", False)
    reasons = [r["reason"] for r in worker.log_records_with("releasing messages")]
    assert "an earlier job of their group is retried" in reasons, "the group's held jobs were not handed back"


def test_a_held_message_outliving_its_visibility_timeout_is_kept_by_the_heartbeat(
    sqs_worker: WorkerFactory, sqs: Any, tmp_path: Path
) -> None:
    """a2 and a3 wait behind a1 for longer than the visibility timeout: still this worker's
    (else, once a1 is deleted, the queue would give them out again), each runs once, at its
    first attempt."""
    worker = fifo_worker(sqs_worker, sqs, workers=3, options=["--visibility-timeout", "3"]).start()
    started = tmp_path / "a0"
    ids = [worker.submit(sleeper(1.0, {"type": "parameter", "name": "--started", "value": str(started)}), "a")]
    wait_until(started.exists, 30, "the first job to start")
    ids += [worker.submit(message, "a") for message in (sleeper(7.0), sleeper(2.0), sleeper(0.1))]

    results = [worker.result(m, timeout=60) for m in ids]
    assert [(r["status"], r["attempt"]) for r in results] == [("succeeded", 1)] * 4
    assert_in_order(results)
    starts = [r["message_id"] for r in worker.log_records_with("job started")]
    assert sorted(starts) == sorted(ids)
    assert worker.log_records_with("duplicate delivery of a finished job") == []


def test_shutdown_releases_held_messages_and_the_next_worker_keeps_each_group_in_order(
    sqs_worker: WorkerFactory, sqs: Any, tmp_path: Path
) -> None:
    jobs_queue, results_queue = new_queue(sqs, "jobs", FifoQueue="true"), new_queue(sqs, "results", FifoQueue="true")
    first = sqs_worker(queue=jobs_queue, result_queue=results_queue, workers=3, options=["--shutdown-grace", "20"])
    first.start()

    def started(name: str) -> dict[str, Any]:
        return {"type": "parameter", "name": "--started", "value": str(tmp_path / name)}

    ids = {"a": [first.submit(sleeper(1.0, started("a1")), "a")]}
    wait_until((tmp_path / "a1").exists, 30, "the first job to start")
    # Locked behind a1 until it is done, then received with a2 (two slots are free): a3 waits.
    ids["a"] += [first.submit(sleeper(2.0, started("a2")), "a"), first.submit(sleeper(0.2), "a")]
    ids["a"].append(first.submit(sleeper(0.2), "a"))
    ids["b"] = [first.submit(sleeper(2.0, started("b1")), "b"), *(first.submit(sleeper(0.2), "b") for _ in range(2))]
    wait_until(lambda: (tmp_path / "a2").exists() and (tmp_path / "b1").exists(), 30, "a2 and b1 to start")
    first.signal(signal.SIGTERM)
    assert first.wait_exit(40) == 0
    released = [r for r in first.log_records_with("releasing messages") if r["reason"] == "shutting down"]
    assert sum(r["count"] for r in released) >= 1, "the held messages were not released"

    second = sqs_worker(queue=jobs_queue, result_queue=results_queue, workers=2).start()
    for group_ids in ids.values():
        results = [second.result(m, timeout=60) for m in group_ids]  # both workers' results
        assert [r["status"] for r in results] == ["succeeded"] * len(group_ids)
        assert_in_order(results)


def test_a_fifo_receive_whose_answer_was_lost_is_retried_under_the_same_attempt_id(
    moto: MotoServer, sqs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = new_queue(sqs, "jobs", FifoQueue="true")
    proxy = TcpProxy(moto.port)
    # This process's SQS clients, made anew, talk to moto through the proxy.
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setattr("queues.sqs._clients", {})
    monkeypatch.setattr("queues.sqs._receive_client", None)
    try:
        queue = SqsQueue(url)
        queue.send(OutgoingMessage("{}", "g", "d1"))
        proxy.drop_answers = True
        with pytest.raises(QueueError):
            queue.receive(10, 0, visibility_timeout=30)
        proxy.drop_answers = False
        queue.receive(10, 0, visibility_timeout=30)
        queue.receive(10, 0, visibility_timeout=30)
    finally:
        proxy.stop()
    attempt_ids = re.findall(rb'"ReceiveRequestAttemptId": ?"([0-9a-f]+)"', b"".join(proxy.requests))
    # Every try of the first receive (botocore's own and ours) under one id; a new one next.
    assert len(attempt_ids) >= 3
    assert len(set(attempt_ids[:-1])) == 1
    assert attempt_ids[-1] != attempt_ids[0]


def _submit_cli(worker: Worker, message: dict[str, Any], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SUPERVISOR), "--queue", worker.queue_spec, "submit", *options, "-"],
        input=json.dumps(message),
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=60,
        env=worker.environment,
    )

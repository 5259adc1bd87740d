"""Job events: `running` and `progress` messages before the result, for requests that ask."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
import threading
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

from pool.child.channel import ChildChannel, EventPipe
from pool.wire import JobEnd, JobEventNote, StaleReport
from tests.support import REPO, SUPERVISOR, Worker, job, new_queue
from tests.test_worker import WorkerFactory


def _progress_job(lines: list[str], pause_s: float, **fields: Any) -> dict[str, Any]:
    arguments: list[dict[str, Any]] = [{"type": "parameter", "name": "--progress", "value": line} for line in lines]
    arguments.append({"type": "parameter", "name": "--progress-pause", "value": pause_s})
    return job(arguments, **fields)


def _messages(worker: Worker, message_id: str) -> list[dict[str, Any]]:
    worker.result(message_id)
    return worker.results_for(message_id)


def test_running_then_progress_in_order_then_the_result(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(options=["--progress-interval", "0.2"]).start()
    message_id = worker.submit(_progress_job(["10 start", "50", "90 almost"], 0.5, events=True, id="job-7"))
    messages = _messages(worker, message_id)
    assert [m["status"] for m in messages] == ["running", "progress", "progress", "progress", "succeeded"]
    running, *progress, result = messages
    assert [m["progress"] for m in progress] == [
        {"percent": 10.0, "message": "start"},
        {"percent": 50.0, "message": None},
        {"percent": 90.0, "message": "almost"},
    ]
    for event in (running, *progress):
        assert event["final"] is False
        assert {key: event[key] for key in ("id", "message_id", "service", "queue", "attempt", "worker")} == {
            key: result[key] for key in ("id", "message_id", "service", "queue", "attempt", "worker")
        }
    assert running["id"] == "job-7" and running["slot"] == 0 and running["started_at"] >= result["started_at"]
    assert result["final"] is True


def test_a_job_that_does_not_ask_gets_no_event(worker_factory: WorkerFactory) -> None:
    worker = worker_factory().start()
    message_id = worker.submit(_progress_job(["10 start"], 0))
    assert [m["status"] for m in _messages(worker, message_id)] == ["succeeded"]


def test_a_flood_of_progress_is_throttled_and_the_last_line_kept(worker_factory: WorkerFactory) -> None:
    worker = worker_factory().start()
    flood = [{"type": "parameter", "name": "--progress-flood", "value": 10_000}]
    message_id = worker.submit(job(flood, events=True))
    progress = [m["progress"] for m in _messages(worker, message_id) if m["status"] == "progress"]
    assert 1 <= len(progress) <= 3
    assert progress[-1] == {"percent": 99.0, "message": "line 9999"}


def test_lines_that_cannot_be_read_are_skipped_and_logged_once(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(options=["--progress-interval", "0.1"]).start()
    message_id = worker.submit(_progress_job(["150 too far", "nan", "60% fine"], 0.3, events=True))
    progress = [m["progress"] for m in _messages(worker, message_id) if m["status"] == "progress"]
    assert progress == [{"percent": 60.0, "message": "fine"}]
    assert len(worker.log_records_with("ignoring a line of the progress file")) == 1


def test_submit_wait_on_a_terminal_shows_the_job_moving(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory(options=["--progress-interval", "0.1"]).start()
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(_progress_job(["40 halfway there"], 1.0)))  # asks for no events itself
    controller, terminal = pty.openpty()
    try:
        submit = subprocess.Popen(
            [sys.executable, str(SUPERVISOR), "--queue", f"local:{worker.queue_path}", "submit", "--wait",
             "--timeout", "60", str(job_file)],
            stdout=subprocess.PIPE, stderr=terminal, cwd=REPO, text=True,
        )  # fmt: skip
        os.close(terminal)
        shown = _read_until_exit(controller, submit)
    finally:
        os.close(controller)
    assert submit.returncode == 0
    assert submit.stdout is not None and json.loads(submit.stdout.read())["status"] == "succeeded"
    assert f"running on {socket.gethostname()} slot 0" in shown
    assert "40% halfway there" in shown
    assert "finished: succeeded" in shown


def test_submit_wait_on_a_pipe_prints_the_result_alone(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory().start()
    completed = subprocess.run(
        [sys.executable, str(SUPERVISOR), "--queue", f"local:{worker.queue_path}", "submit", "--wait", "-"],
        input=json.dumps(_progress_job(["40 halfway there"], 0)), capture_output=True, text=True, cwd=REPO,
        check=True,
    )  # fmt: skip
    assert json.loads(completed.stdout)["status"] == "succeeded"
    assert completed.stderr == ""


def _read_until_exit(controller: int, process: subprocess.Popen[str]) -> str:
    """What the process wrote to its terminal, until it exits (and its terminal closes)."""
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(60)
    return b"".join(chunks).decode(errors="replace")


def test_events_on_fifo_queues_keep_the_group_and_do_not_displace_the_result(tmp_path: Path, sqs: Any) -> None:
    worker = Worker(
        tmp_path,
        queue=new_queue(sqs, "jobs", FifoQueue="true"),
        result_queue=new_queue(sqs, "results", FifoQueue="true"),
        options=["--progress-interval", "0.1"],
    )
    try:
        worker.start()
        message_id = worker.submit(_progress_job(["25 a", "75 b"], 0.4, events=True), group="g1")
        worker.result(message_id, timeout=60)
        messages = worker.results_for(message_id)
        # Each event has a deduplication id of its own: none of them, and not the result, is dropped.
        assert [m["status"] for m in messages] == ["running", "progress", "progress", "succeeded"]
        assert worker.result_groups[message_id] == "g1"
    finally:
        worker.stop()


def test_an_event_that_cannot_be_passed_on_costs_the_job_nothing(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(
        options=["--progress-interval", "0.1"], environment={"API_WORKER_TEST_FAULTS": "event:1"}
    ).start()
    message_id = worker.submit(_progress_job(["50 half"], 0.3, events=True))
    messages = _messages(worker, message_id)
    assert [m["status"] for m in messages] == ["progress", "succeeded"]  # the running event was lost
    assert len(worker.log_records_with("could not pass on an event of the job")) == 1


def test_a_job_s_last_events_go_with_its_report_and_a_running_job_s_at_once() -> None:
    receiving, sending = Pipe(duplex=False)
    events = EventPipe(ChildChannel(sending))
    while_running = JobEventNote("m1", '{"status": "progress"}', None, 1)
    sender = threading.Thread(target=events.send, args=(while_running,))  # the progress ticker's
    sender.start()
    sender.join()
    assert receiving.poll(10) and receiving.recv() == while_running
    at_the_end = JobEventNote("m1", '{"status": "running"}', None, 2)
    events.send(at_the_end)  # the job's own thread: held for its report
    assert not receiving.poll(0)
    report = StaleReport("m1", "j1", 1)
    assert events.end(report) == JobEnd(report, (at_the_end,))
    assert events.end(report) == JobEnd(report)

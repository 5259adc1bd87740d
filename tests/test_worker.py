"""The whole worker, end to end: a real supervisor, real children, the real embedded queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.waiting import wait_until
from tests.support import REPO, SEED_INPUTS, SUPERVISOR, Worker, check_seed_result, job, process_exists, seed_job

WorkerFactory = Callable[..., Worker]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for path, content in SEED_INPUTS.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    (root / "out").mkdir()
    return root


def test_seed_format_job_runs_with_file_staging(worker_factory: WorkerFactory, data: Path) -> None:
    worker = worker_factory(options=["--file-root", str(data)]).start()
    result = worker.result(worker.submit(seed_job(f"file://{data}")))

    check_seed_result(result, f"file://{data}", lambda path: (data / path).read_bytes())
    assert set(result) >= {
        "id", "message_id", "service", "queue", "status", "exit_code", "signal", "stdout", "stderr", "outputs",
        "error", "attempt", "started_at", "finished_at", "duration_s", "usage", "worker",
    }  # fmt: skip
    assert worker.process is not None and result["worker"]["pid"] == worker.process.pid
    assert worker.leftovers() == []


def test_failed_command_still_uploads_its_outputs(worker_factory: WorkerFactory, data: Path) -> None:
    worker = worker_factory(options=["--file-root", str(data)]).start()
    message = job(
        [
            {"type": "output", "name": "--outfile", "value": f"file://{data}/out/partial.txt"},
            {"type": "parameter", "name": "--exit", "value": 3},
        ]
    )
    result = worker.result(worker.submit(message))
    assert (result["status"], result["exit_code"]) == ("failed", 3)
    assert result["error"]["message"] == "the command ended with exit code 3"
    assert (data / "out" / "partial.txt").exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("this is not json", "body: not valid JSON"),
        (json.dumps(job(queue="docker")), "queue: this worker runs 'native' jobs, not 'docker'"),
        (json.dumps(job(service="other")), "service: this worker serves 'tool', not 'other'"),
        (
            json.dumps(job([{"type": "file", "value": "x"}])),
            "command.arguments[0].type: must be one of input, parameter, output",
        ),
        (
            json.dumps(job([{"type": "input", "value": "file:///etc/passwd"}])),
            "command.arguments[0].value: file:///etc/passwd: file:// URIs are disabled",
        ),
        (json.dumps(job(reply_to="../../etc/x")), "reply_to: local queue name"),
    ],
)
def test_invalid_messages_are_rejected_without_running(worker_factory: WorkerFactory, body: str, expected: str) -> None:
    worker = worker_factory().start()
    result = worker.result(worker.submit(body))
    assert result["status"] == "rejected"
    assert result["error"]["message"].startswith(expected), result["error"]
    assert result["exit_code"] is None
    # The worker is still there and still working.
    assert worker.result(worker.submit(job()))["status"] == "succeeded"


def test_test_message_answers_alive_without_running(worker_factory: WorkerFactory) -> None:
    worker = worker_factory().start()
    result = worker.result(worker.submit({"test": True, "service": "tool", "queue": "native"}))
    assert result["status"] == "alive"
    assert result["worker"]["host"] and result["worker"]["version"]
    assert result["exit_code"] is None


def test_job_id_and_reply_to_are_honoured(worker_factory: WorkerFactory) -> None:
    worker = worker_factory().start()
    message_id = worker.submit(job(id="my-job", reply_to="replies"))
    replies = worker.jobs.sibling("replies")
    (reply,) = wait_until(lambda: replies.receive(1, 1, 30), 20, "the reply")
    result = json.loads(reply.body)
    assert (result["id"], result["message_id"], result["status"]) == ("my-job", message_id, "succeeded")


def test_timeout_in_the_message_stops_the_job(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(options=["--kill-grace", "1"]).start()
    result = worker.result(worker.submit(job([{"type": "parameter", "name": "--sleep", "value": 30}], timeout=0.5)))
    assert result["status"] == "timeout"
    assert result["error"]["type"] == "timeout"


def test_a_command_gone_missing_is_a_system_error_retried_then_final(tmp_path: Path) -> None:
    tool = tmp_path / "tool.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    worker = Worker(tmp_path, options=["--max-attempts", "2", "--retry-delay", "0.2"], program=["--", str(tool)])
    worker.start()
    try:
        tool.unlink()
        message_id = worker.submit(job())
        final = worker.result(message_id)
        attempts = worker.results_for(message_id)
        assert [(r["status"], r["attempt"], r["final"]) for r in attempts] == [("error", 1, False), ("error", 2, True)]
        assert final["error"]["type"] == "runner"
        assert f"cannot start '{tool}'" in final["error"]["message"]
        wait_until(lambda: worker.jobs.count() == 0, 10, "the message to be deleted")
    finally:
        worker.stop()


def test_submit_wait_prints_the_result_and_exits_by_status(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory().start()
    queue = ["--queue", f"local:{worker.queue_path}"]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(job(command={"stdin": {"type": "pipe", "value": "hi"}, "arguments": []})))
    completed = subprocess.run(
        [sys.executable, str(SUPERVISOR), *queue, "submit", "--wait", "--timeout", "30", str(good)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["stdout"] == "HI"

    bad = subprocess.run(
        [sys.executable, str(SUPERVISOR), *queue, "submit", "--wait", "--timeout", "30", "-"],
        input=json.dumps(job([{"type": "socket", "value": "x"}])),
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "command.arguments[0].type: must be one of" in json.loads(bad.stdout)["error"]["message"]


def test_submit_without_wait_prints_the_message_id(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(SUPERVISOR), "--queue", f"local:{tmp_path}/q.sqlite3", "submit", "-"],
        input=json.dumps(job()), capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    assert json.loads(completed.stdout)["message_id"]


def test_submit_wait_gives_up_after_its_timeout(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(SUPERVISOR), "--queue", f"local:{tmp_path}/q.sqlite3", "submit", "--wait",
         "--timeout", "0.5", "-"],
        input=json.dumps(job()), capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert completed.returncode == 4
    assert "no final result" in completed.stderr


def test_sigterm_lets_the_running_job_finish_then_exits_cleanly(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory().start()
    started = tmp_path / "started"
    message_id = worker.submit_and_await_start(started, 1)
    waiting = worker.submit(job())
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert worker.result(message_id)["status"] == "succeeded"
    assert worker.results_for(waiting) == []
    assert worker.jobs.count() == 1  # released, not lost
    assert worker.leftovers() == []


def test_second_signal_interrupts_and_releases_the_running_job(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory().start()
    started = tmp_path / "started"
    message_id = worker.submit_and_await_start(started, 60)
    job_pid = int(started.read_text())
    worker.signal(signal.SIGTERM)
    worker.wait_for_log("stopping: no new jobs; running jobs may finish")
    worker.signal(signal.SIGINT)
    assert worker.wait_exit() == 0
    assert worker.results_for(message_id) == []
    wait_until(lambda: not process_exists(job_pid), 10, "the job process to be killed")
    assert worker.leftovers() == []
    (released,) = worker.jobs.receive(1, 0, visibility_timeout=60)
    assert (released.message_id, released.receive_count) == (message_id, 2)


def test_sigkill_of_the_worker_mid_job_reruns_the_job_after_restart(tmp_path: Path) -> None:
    options = ["--visibility-timeout", "2"]
    worker = Worker(tmp_path, options=options).start()
    started = tmp_path / "started"
    message_id = worker.submit_and_await_start(started, 3)
    worker.signal(signal.SIGKILL)
    worker.wait_exit()
    started.unlink()

    restarted = Worker(tmp_path, options=options).start()
    try:
        result = restarted.result(message_id, timeout=60)
        assert (result["status"], result["attempt"]) == ("succeeded", 2)
        assert started.exists()
    finally:
        restarted.stop()


def test_a_child_killed_mid_job_is_replaced_and_the_job_rerun(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker = worker_factory().start()
    started = tmp_path / "started"
    message_id = worker.submit_and_await_start(started, 1)
    child_pid = os.getppid() if False else _parent_of(int(started.read_text()))
    os.kill(child_pid, signal.SIGKILL)
    final = worker.result(message_id)
    assert (final["status"], final["attempt"]) == ("succeeded", 2)
    first = worker.results_for(message_id)[0]
    assert (first["status"], first["final"]) == ("error", False)
    assert "child died" in first["error"]["message"]
    worker.wait_for_log("child died; replacing it")


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])


def test_an_unusable_scratch_directory_is_a_system_error(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    not_a_directory = tmp_path / "scratch-file"
    not_a_directory.write_text("")
    worker = worker_factory(options=["--scratch-dir", str(not_a_directory), "--max-attempts", "1"]).start()
    result = worker.result(worker.submit(job()))
    assert (result["status"], result["final"]) == ("error", True)
    assert result["error"]["type"] == "system"
    assert str(not_a_directory) in result["error"]["message"]
    # A test message needs no scratch space and still answers.
    assert worker.result(worker.submit({"test": True, "service": "tool", "queue": "native"}))["status"] == "alive"


def test_pipe_output_beyond_the_inline_limit_is_cut_and_said_so(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(options=["--max-inline-output", "1K"]).start()
    result = worker.result(worker.submit(job(command={"stdin": {"type": "pipe", "value": "a" * 5000}})))
    assert result["status"] == "succeeded"
    assert result["stdout"] == "A" * 1024
    assert [(s["path"], s["reason"]) for s in result["skipped"]] == [
        ("stdout", "cut to its first 1K of 5000 bytes; use a uri stream for more")
    ]


def test_submit_wait_of_a_body_that_is_not_json_gets_its_rejection(worker_factory: WorkerFactory) -> None:
    worker = worker_factory().start()
    completed = subprocess.run(
        [sys.executable, str(SUPERVISOR), "--queue", f"local:{worker.queue_path}", "submit", "--wait",
         "--timeout", "30", "-"],
        input="this is not json", capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert completed.returncode == 1
    result = json.loads(completed.stdout)
    assert (result["status"], result["error"]["type"]) == ("rejected", "invalid_request")
    assert result["error"]["message"].startswith("body: not valid JSON")

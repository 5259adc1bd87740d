"""Helpers for the tests: a real supervisor process on a real embedded queue."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import psutil
import pytest

from assembly.children import IMAGE_STATE_DIR_NAME
from monitoring.state import STATUS_FILE_NAME
from protocol.body import DEFAULT_MAX_BODY_BYTES, decode_body
from protocol.request import JobRequest
from queues import default_instance_name, default_state_dir, open_queue
from queues.base import OutgoingMessage
from queues.local import LocalQueue
from staging.workspace import SCRATCH_LOCK_NAME
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
SUPERVISOR = REPO / "supervisor.py"
TOOL = REPO / "tests" / "jobs" / "tool.py"


def job(arguments: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """A valid native job message for the test tool, with fields overridden."""
    message: dict[str, Any] = {
        "test": False,
        "service": "tool",
        "queue": "native",
        "command": {"arguments": arguments or []},
    }
    message.update(fields)
    return message


SEED_INPUTS = {"in/input.txt": b"first input\n", "in/shapes/poly.shp": b"poly.shp",
               "in/shapes/poly.shx": b"poly.shx", "in/shapes/poly.dbf": b"poly.dbf",
               "in/shapes/other.txt": b"not matched by the prefix"}  # fmt: skip
SEED_OUTPUTS = {"out/result.txt": b"FIRST INPUT\nPOLY.SHP", "out/parts/p.a": b"a\n", "out/parts/p.b": b"b\n"}


def seed_job(base: str) -> dict[str, Any]:
    """The seed README's message, every field used, for objects under `base` (see SEED_INPUTS)."""
    return {
        "test": False,
        "service": "tool",
        "queue": "native",
        "command": {
            "stdin": {"type": "pipe", "value": "raw input data"},
            "stdout": {"type": "pipe", "value": None},
            "stderr": {"type": "uri", "value": f"{base}/out/stderr.txt"},
            "arguments": [
                {"type": "input", "name": "--infile", "value": f"{base}/in/input.txt"},
                {"type": "input", "name": "--infile", "value": f"{base}/in/shapes/poly.shp"},
                {"type": "parameter", "name": "--exit", "value": "0"},
                {"type": "output", "name": "--outfile", "value": f"{base}/out/result.txt"},
                {"type": "output", "name": "--out-prefix", "value": f"{base}/out/parts/p"},
            ],
            "input": [f"{base}/in/shapes/poly"],
            "output": [f"{base}/out/parts/"],
        },
    }


def check_seed_result(result: dict[str, Any], base: str, read: Callable[[str], bytes]) -> None:
    """What `seed_job(base)` must produce; `read` fetches an object by its path under `base`."""
    assert result["status"] == "succeeded", result
    assert (result["exit_code"], result["stdout"], result["stderr"]) == (0, "RAW INPUT DATA", None)
    for path, content in SEED_OUTPUTS.items():
        assert read(path) == content, path
    assert read("out/stderr.txt").startswith(b"tool ran in ")
    assert {o["uri"]: o["bytes"] for o in result["outputs"]} == {
        **{f"{base}/{path}": len(content) for path, content in SEED_OUTPUTS.items()},
        f"{base}/out/stderr.txt": len(read("out/stderr.txt")),
    }
    assert [(s["path"], s["reason"]) for s in result["skipped"]] == [
        (f"{base}/out/parts/p", "not produced by the command")  # the tool writes p.a and p.b instead
    ]
    assert result["attempt"] == 1 and result["final"] is True


class Worker:
    """A `supervisor.py` process (native by default) with its own queue file and scratch directory."""

    def __init__(
        self,
        directory: Path,
        *,
        workers: int = 1,
        options: list[str] | None = None,
        queue: str | None = None,
        result_queue: str | None = None,
        environment: dict[str, str] | None = None,
        program: list[str] | None = None,
        runner: list[str] | None = None,
        default_paths: bool = False,
    ) -> None:
        """The embedded queue in `directory` by default; or `queue` / `result_queue` (SQS URLs).
        Jobs run tests/jobs/tool.py unless `program` gives other words to follow `native --service tool`,
        or `runner` other words (e.g. `docker ...`) after the global options. `default_paths`: no
        --scratch-dir and --journal given: the worker's own defaults (the session's state directory)."""
        self.directory = directory
        self.queue_path = directory / "queue.sqlite3"
        self.scratch = directory / "scratch"
        self.log_path = directory / "worker.log"
        self.journal_path = directory / "journal.sqlite3"
        self.queue_spec = queue or f"local:{self.queue_path}"
        self.default_paths = default_paths
        if default_paths:
            instance = default_state_dir() / default_instance_name(self.queue_spec)
            self.scratch, self.journal_path = instance / "scratch", instance / "journal.sqlite3"
        self.jobs: Any = open_queue(self.queue_spec)
        self.results: Any = open_queue(result_queue) if result_queue else LocalQueue(self.queue_path, "results")
        self.environment = environment
        self.program = program
        self.runner = runner
        self.workers = workers
        self.options = options or []
        self.process: subprocess.Popen[bytes] | None = None
        self._collected: dict[str, list[dict[str, Any]]] = {}
        self.result_groups: dict[str, str | None] = {}  # message id -> the group its result came in

    def command(self) -> list[str]:
        return [
            sys.executable,
            str(SUPERVISOR),
            "--queue",
            self.queue_spec,
            *(["--result-queue", self.results.spec] if self.queue_spec != f"local:{self.queue_path}" else []),
            *([] if self.default_paths else ["--scratch-dir", str(self.scratch), "--journal", str(self.journal_path)]),
            "--workers",
            str(self.workers),
            "--log-format",
            "json",
            # The box's free space must not decide a test: a small reserve unless a test sets one.
            *([] if "--disk-reserve" in self.options else ["--disk-reserve", "64M"]),
            *self.options,
            *(self.runner or ["native", "--service", "tool", *(self.program or ["--", sys.executable, str(TOOL)])]),
        ]

    def start(self) -> Worker:
        log = self.log_path.open("ab")
        environment = {**os.environ, **self.environment} if self.environment else None
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=log, cwd=REPO, env=environment)
        log.close()
        self.wait_for_log("supervisor started")
        return self

    def log_records(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        records = []
        for line in self.log_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def log_records_with(self, message: str) -> list[dict[str, Any]]:
        return [record for record in self.log_records() if record.get("message") == message]

    def wait_for_log(self, message: str, timeout: float = 20.0, count: int = 1) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]]:
            matches = [r for r in self.log_records() if r.get("message") == message]
            if len(matches) >= count:
                return matches
            exited = self.process is not None and self.process.poll() is not None
            assert not exited, f"worker exited with {self.process.returncode}:\n{self.log_path.read_text()}"  # type: ignore[union-attr]
            return []

        return wait_until(found, timeout, f"log line {message!r}")

    def submit(self, message: dict[str, Any] | str, group: str | None = None) -> str:
        body = message if isinstance(message, str) else json.dumps(message)
        return str(self.jobs.send(OutgoingMessage(body, group)))

    def submit_and_await_start(self, started: Path, sleep_s: float) -> str:
        """Submit a job that writes its pid to `started` and then sleeps; return once it runs."""
        message_id = self.submit(
            job(
                [
                    {"type": "parameter", "name": "--started", "value": str(started)},
                    {"type": "parameter", "name": "--sleep", "value": sleep_s},
                ]
            )
        )
        wait_until(started.exists, 20, "the job to start")
        return message_id

    def result(self, message_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The final result of a message, waiting for it."""
        return wait_until(lambda: self._final(message_id), timeout, f"the result of {message_id}")

    def results_for(self, message_id: str) -> list[dict[str, Any]]:
        self._drain()
        return self._collected.get(message_id, [])

    def _final(self, message_id: str) -> dict[str, Any] | None:
        return next((r for r in self.results_for(message_id) if r["final"]), None)

    def _drain(self) -> None:
        for message in self.results.receive(10, 0, visibility_timeout=30):
            result = json.loads(message.body)
            self._collected.setdefault(result["message_id"], []).append(result)
            self.result_groups[result["message_id"]] = message.group_id
            self.results.delete([message.receipt])

    def leftovers(self) -> list[Path]:
        """What jobs left in the scratch directory: whatever is in a job directory or a captured
        stream. A slot keeps its last job's directory and stream files, emptied, for its next
        job: so empty ones are no leftovers, unless there are more job directories than slots."""
        if not self.scratch.exists():
            return []
        found, empty_directories = [], []
        for entry in self.scratch.iterdir():
            if entry.name in (STATUS_FILE_NAME, SCRATCH_LOCK_NAME, IMAGE_STATE_DIR_NAME):
                continue  # the worker's own, not a job's
            if entry.name.startswith("job-streams-"):
                found += [stream for stream in entry.iterdir() if stream.is_symlink() or stream.stat().st_size]
            elif entry.is_dir() and not entry.is_symlink() and not any(entry.iterdir()):
                empty_directories.append(entry)
            else:
                found.append(entry)
        return found + (empty_directories if len(empty_directories) > self.workers else [])

    def status_text(self) -> str:
        """What the `status` command prints about this worker."""
        command = [*self.command()[:2], "--scratch-dir", str(self.scratch), "status"]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False).stdout

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Stop at once: the second signal interrupts running jobs instead of waiting for them."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            # Signals sent back to back merge into one: send the second once the first was seen.
            with contextlib.suppress(AssertionError):
                self.wait_for_log("stopping: no new jobs; running jobs may finish", timeout=10)
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def pool_children(worker: Worker) -> list[int]:
    """The pids of the worker's pool children (not multiprocessing's resource tracker)."""
    assert worker.process is not None
    children = psutil.Process(worker.process.pid).children()
    return [child.pid for child in children if "spawn_main" in " ".join(child.cmdline())]


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def new_queue(sqs: Any, prefix: str, **attributes: str) -> str:
    """A new SQS queue (on whatever endpoint the `sqs` client uses); its URL. With
    FifoQueue="true", a FIFO queue (its name ends in .fifo)."""
    suffix = ".fifo" if attributes.get("FifoQueue") == "true" else ""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}{suffix}"
    return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def queue_is_empty(sqs: Any, url: str) -> bool:
    attributes: dict[str, str] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "0",
        "0",
    )


def metrics(port: int) -> str:
    """A worker's /metrics page on its metrics port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def health(port: int) -> tuple[int, dict[str, Any]]:
    """A worker's /healthz answer on its metrics port: (HTTP status, body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def unavailable(why: str) -> NoReturn:
    """A real part the test needs is missing: skipped, except in CI (`CI` set), where `.ci/run`
    provides every part and its absence is a failure."""
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def required_program(name: str, package: str) -> str:
    """The path of a program the test needs (`unavailable` without it)."""
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed (Debian's {package} package)")
    return found


def parse_request(body: str) -> JobRequest:
    """The request in `body`; `RequestRejected` naming the first bad field."""
    decoded = decode_body(body, DEFAULT_MAX_BODY_BYTES)
    if decoded.rejection is not None:
        raise decoded.rejection
    assert decoded.request is not None
    return decoded.request


def in_flight_count(queue: LocalQueue) -> int:
    """How many messages of an embedded queue are received and not yet visible again."""
    with contextlib.closing(sqlite3.connect(queue.path)) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM messages WHERE queue = ? AND receive_count > 0 AND visible_at > ?",
            (queue.name, time.time()),
        ).fetchone()
    return int(row[0])

"""Hostile bodies through a real worker: each gets exactly one `rejected` result, and the
supervisor and its children stay up."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from queues.local import LocalQueue
from testkit.moto_server import MotoServer
from testkit.waiting import wait_until
from tests.support import Worker, job

WorkerFactory = Callable[..., Worker]

DEEP_OBJECT = '{"a":' * 5000 + "1" + "}" * 5000
LONE_SURROGATE = '{"service": "\\udc80", "queue": "native", "test": true}'
WORST_BODIES: dict[str, tuple[str, str]] = {
    "deep object": (DEEP_OBJECT, "body: nests 5000 levels deep"),
    "lone surrogate": (LONE_SURROGATE, "service: holds a lone surrogate (\\udc80)"),
    "deep array beside valid fields": (
        '{"service": "tool", "queue": "native", "x": ' + "[" * 20_000 + "]" * 20_000 + "}",
        "body: nests 20001 levels deep",
    ),
    "unclosed nesting": ("[" * 30_000, "body:"),
    "number out of range": ('{"service": "tool", "queue": "native", "timeout": 1e999}', "timeout: Number out of range"),
    "huge integer": (
        '{"service": "tool", "queue": "native", "command": {"arguments": [{"type": "parameter", "value": '
        + "9" * 10_000
        + "}]}}",
        "command.arguments[0].value: Integer value out of range",
    ),
    "NUL in an argument": (
        json.dumps(job([{"type": "parameter", "name": "--exit", "value": "0\u0000"}])),
        "command.arguments[0].value: must not contain a NUL character",
    ),
    "over the size limit": (
        json.dumps(job(command={"stdin": {"type": "pipe", "value": "x" * 70_000}})),
        "body: is 70",
    ),
    "null": ("null", "body: must be an object"),
}


def _check_rejections(worker: Worker, sent: dict[str, str]) -> None:
    for name, message_id in sent.items():
        result = worker.result(message_id)
        expected = WORST_BODIES[name][1]
        assert result["status"] == "rejected", (name, result)
        assert result["error"]["message"].startswith(expected), (name, result["error"])
        assert len(worker.results_for(message_id)) == 1, name


def test_the_worst_bodies_are_rejected_and_the_worker_stays_up(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    dead_letters = f"local:{tmp_path / 'queue.sqlite3'}#dead"
    worker = worker_factory(workers=2, options=["--max-body-size", "64K", "--dead-letter-queue", dead_letters]).start()
    sent = {name: worker.submit(body) for name, (body, _) in WORST_BODIES.items()}
    _check_rejections(worker, sent)
    healthy = worker.result(worker.submit(job(command={"stdin": {"type": "pipe", "value": "still up"}})))
    assert (healthy["status"], healthy["stdout"]) == ("succeeded", "STILL UP")
    assert worker.process is not None and worker.process.poll() is None
    assert not worker.log_records_with("child died; replacing it")
    moved = LocalQueue(tmp_path / "queue.sqlite3", "dead").receive(20, 0, 30)
    assert sorted(m.body for m in moved) == sorted(body for body, _ in WORST_BODIES.values())


def test_a_rejection_of_an_invalid_body_still_reaches_its_reply_queue(worker_factory: WorkerFactory) -> None:
    worker = worker_factory().start()
    body = '{"id": "job-7", "reply_to": "mine", "service": "\\udc80", "queue": "native", "test": true}'
    message_id = worker.submit(body)
    replies = LocalQueue(worker.queue_path, "mine")
    (reply,) = wait_until(lambda: replies.receive(1, 0, 30), 20, "the reply")
    result = json.loads(reply.body)
    assert (result["id"], result["message_id"], result["status"]) == ("job-7", message_id, "rejected")


def test_a_message_that_keeps_killing_its_child_is_given_up_and_dead_lettered(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    dead_letters = f"local:{tmp_path / 'queue.sqlite3'}#dead"
    worker = worker_factory(options=["--max-attempts", "2", "--dead-letter-queue", dead_letters]).start()
    started = tmp_path / "started"
    body = job([{"type": "parameter", "name": "--started", "value": str(started)}, {"type": "parameter",
               "name": "--sleep", "value": 30}], id="doomed")  # fmt: skip
    message_id = worker.submit(body)
    for attempt in (1, 2):
        pid = wait_until(lambda: _pid_in(started), 20, f"attempt {attempt} to start")
        started.unlink()
        os.kill(_parent_of(pid), signal.SIGKILL)  # the pool child running the job
        wait_until(lambda: len(worker.results_for(message_id)) >= attempt, 20, f"the result of attempt {attempt}")  # noqa: B023
    first, last = worker.results_for(message_id)
    assert (first["status"], first["final"], first["id"]) == ("error", False, "doomed")
    assert (last["status"], last["final"], last["attempt"], last["id"]) == ("error", True, 2, "doomed")
    assert last["error"]["message"] == "the worker child died (exit code -9); attempt 2 of 2: given up"
    (moved,) = wait_until(lambda: LocalQueue(tmp_path / "queue.sqlite3", "dead").receive(1, 0, 30), 20, "the DLQ")
    assert json.loads(moved.body)["id"] == "doomed"
    wait_until(lambda: worker.jobs.count() == 0, 10, "the message to be deleted")
    assert not started.exists()
    worker.wait_for_log("pool ready")


def test_poison_bodies_and_pointers_over_sqs(tmp_path: Path, moto: MotoServer, bucket: str) -> None:
    sqs = boto3.client("sqs")
    jobs, results = (sqs.create_queue(QueueName=f"{n}-{uuid.uuid4().hex[:8]}")["QueueUrl"] for n in ("jobs", "res"))
    worker = Worker(tmp_path, queue=jobs, result_queue=results, options=["--max-body-size", "64K"]).start()
    try:
        s3 = boto3.client("s3")
        s3.put_object(Bucket=bucket, Key="big", Body=b"x" * 100_000)
        s3.put_object(Bucket=bucket, Key="not-text", Body=b"\xff\xfe" * 10)

        def pointer(key: str, size: int, raw: str | None = None) -> dict[str, Any]:
            body = raw or json.dumps(["software.amazon.payloadoffloading.PayloadS3Pointer",
                                      {"s3BucketName": bucket, "s3Key": key}])  # fmt: skip
            size_attribute = {"DataType": "Number", "StringValue": str(size)}
            return {"MessageBody": body, "MessageAttributes": {"ExtendedPayloadSize": size_attribute}}

        entries: dict[str, dict[str, Any]] = {
            "deep object": {"MessageBody": DEEP_OBJECT},
            "lone surrogate": {"MessageBody": LONE_SURROGATE},
            "declared too large": pointer("big", 100_000),
            "larger than declared": pointer("big", 10),
            "missing payload": pointer("gone", 10),
            "not a pointer": pointer("", 10, raw="[" * 10_000),
            "payload not text": pointer("not-text", 20),
            "valid": {"MessageBody": json.dumps(job(command={"stdin": {"type": "pipe", "value": "beside"}}))},
        }
        sent = {name: sqs.send_message(QueueUrl=jobs, **entry)["MessageId"] for name, entry in entries.items()}
        expected = {
            "deep object": "body: nests 5000 levels deep",
            "lone surrogate": "service: holds a lone surrogate (\\udc80)",
            "declared too large": f"body: the payload at s3://{bucket}/big is 100000 bytes; at most 65536",
            "larger than declared": f"body: the payload at s3://{bucket}/big is over 65536 bytes",
            "missing payload": f"body: cannot fetch the payload at s3://{bucket}/gone",
            "not a pointer": "body: marked as a large payload, but not an S3 pointer",
            "payload not text": f"body: the payload at s3://{bucket}/not-text is not UTF-8 text",
        }
        for name, message_id in sent.items():
            result = worker.result(message_id, timeout=60)
            if name == "valid":
                assert (result["status"], result["stdout"]) == ("succeeded", "BESIDE")
                continue
            assert result["status"] == "rejected", (name, result)
            assert result["error"]["message"].startswith(expected[name]), (name, result["error"])
            assert len(worker.results_for(message_id)) == 1
        assert worker.process is not None and worker.process.poll() is None
        assert not worker.log_records_with("child died; replacing it")
    finally:
        worker.stop()


def _pid_in(path: Path) -> int | None:
    text = path.read_text() if path.exists() else ""
    return int(text) if text else None


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])

"""The worker on SQS, end to end: moto's server over HTTP, real supervisor and children."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3

from testkit.moto_server import MotoServer, free_port
from testkit.tcp_proxy import TcpProxy
from testkit.waiting import wait_until
from tests.support import REPO, SUPERVISOR, Worker, job, metrics, new_queue


def test_jobs_and_test_messages_run_through_sqs(sqs_worker: Any) -> None:
    worker = sqs_worker().start()
    result = worker.result(worker.submit(job(command={"stdin": {"type": "pipe", "value": "over sqs"}})))
    assert (result["status"], result["stdout"], result["attempt"]) == ("succeeded", "OVER SQS", 1)
    alive = worker.result(worker.submit({"test": True, "service": "tool", "queue": "native"}))
    assert alive["status"] == "alive"


def test_large_request_and_large_result_travel_through_s3(sqs_worker: Any, bucket: str) -> None:
    worker = sqs_worker(options=["--large-payload-bucket", bucket]).start()
    data = "z" * (300 * 1024)
    sender = Worker(worker.directory, queue=worker.queue_spec)
    sender.jobs.large_payload_bucket = bucket  # the client's side: requests over the limit go to S3 too
    message_id = sender.submit(job(command={"stdin": {"type": "pipe", "value": data}}))
    receiver = Worker(worker.directory, queue=worker.queue_spec, result_queue=worker.results.spec)
    receiver.results.large_payload_bucket = bucket
    result = receiver.result(message_id)
    assert result["status"] == "succeeded"
    assert result["stdout"] == data.upper()  # a result of over 300 KiB
    # The request's payload is deleted with its message; the result's stays until its reader deletes it.
    wait_until(
        lambda: len(boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])) == 0, 20, "payload clean-up"
    )


def test_a_request_in_the_legacy_pointer_format_runs(sqs_worker: Any, sqs: Any, bucket: str) -> None:
    worker = sqs_worker().start()  # reading pointers needs no bucket of the worker's own
    body = json.dumps(job(command={"stdin": {"type": "pipe", "value": "legacy"}}))
    boto3.client("s3").put_object(Bucket=bucket, Key="legacy-1", Body=body.encode())
    pointer = json.dumps(
        ["com.amazon.sqs.javamessaging.MessageS3Pointer", {"s3BucketName": bucket, "s3Key": "legacy-1"}]
    )
    sent = sqs.send_message(
        QueueUrl=worker.queue_spec,
        MessageBody=pointer,
        MessageAttributes={"SQSLargePayloadSize": {"DataType": "Number", "StringValue": str(len(body))}},
    )
    result = worker.result(sent["MessageId"])
    assert (result["status"], result["stdout"]) == ("succeeded", "LEGACY")
    s3 = boto3.client("s3")
    wait_until(lambda: not s3.list_objects_v2(Bucket=bucket).get("Contents"), 20, "the payload to be deleted")


def test_a_job_lasting_three_visibility_timeouts_runs_once_on_sqs(sqs_worker: Any) -> None:
    worker = sqs_worker(options=["--visibility-timeout", "2"]).start()
    result = worker.result(worker.submit(job([{"type": "parameter", "name": "--sleep", "value": 6.5}])))
    assert (result["status"], result["attempt"]) == ("succeeded", 1)
    assert len(worker.log_records_with("job started")) == 1


def test_malformed_body_goes_to_the_dead_letter_queue(sqs_worker: Any, sqs: Any) -> None:
    dead = new_queue(sqs, "dead")
    worker = sqs_worker(options=["--dead-letter-queue", dead]).start()
    result = worker.result(worker.submit("{not json"))
    assert result["status"] == "rejected" and result["error"]["message"].startswith("body: not valid JSON")
    (moved,) = wait_until(lambda: sqs.receive_message(QueueUrl=dead, WaitTimeSeconds=1).get("Messages"), 20, "DLQ")
    assert moved["Body"] == "{not json"
    attributes = sqs.get_queue_attributes(QueueUrl=worker.queue_spec, AttributeNames=["All"])["Attributes"]
    assert (
        attributes["ApproximateNumberOfMessages"] == "0" and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    )


def test_attempts_follow_the_redrive_policy(sqs_worker: Any, sqs: Any, tmp_path: Path) -> None:
    dead = new_queue(sqs, "dead")
    arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    jobs = new_queue(sqs, "jobs", RedrivePolicy=json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "1"}))
    tool = tmp_path / "gone.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    worker = sqs_worker(queue=jobs, program=["--", str(tool)])
    worker.start()
    tool.unlink()
    result = worker.result(worker.submit(job()))
    assert (result["status"], result["attempt"], result["final"]) == ("error", 1, True)


def test_jobs_survive_a_queue_outage(sqs_worker: Any, moto: MotoServer) -> None:
    proxy = TcpProxy(moto.port)
    try:
        worker = sqs_worker(workers=2, environment={"AWS_ENDPOINT_URL": proxy.endpoint}).start()
        sent = [worker.submit(job([{"type": "parameter", "name": "--sleep", "value": 1}])) for _ in range(6)]
        worker.wait_for_log("job started")
        proxy.stop()
        errors = wait_until(lambda: [r for r in worker.log_records() if "failed" in r.get("message", "")], 30, "errors")
        # Each names the call and the queue, e.g. "receive_message on http://.../jobs-1 failed: ...".
        queues = (worker.queue_spec, worker.results.spec)
        assert all(any(f" on {queue} failed" in str(r.get("error")) for queue in queues) for r in errors), errors
        time.sleep(10)  # the outage itself: the server stays unreachable for 10 s
        proxy.start()
        finals = {message_id: worker.result(message_id, timeout=120) for message_id in sent}
        assert all(result["status"] == "succeeded" for result in finals.values())
        for message_id in sent:
            assert len([r for r in worker.results_for(message_id) if r["final"]]) == 1
        assert worker.process is not None and worker.process.poll() is None
    finally:
        proxy.stop()


def test_submit_wait_against_sqs(sqs_worker: Any, tmp_path: Path) -> None:
    worker = sqs_worker().start()
    completed = subprocess.run(
        [sys.executable, str(SUPERVISOR), "--queue", worker.queue_spec, "submit", "--wait", "--timeout", "60", "-"],
        input=json.dumps(job(command={"stdin": {"type": "pipe", "value": "cli"}})),
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["stdout"] == "CLI"


def test_each_sqs_call_is_timed_on_metrics_by_call(sqs_worker: Any) -> None:
    port = free_port()
    worker = sqs_worker(options=["--metrics-port", str(port)]).start()
    assert worker.result(worker.submit(job()))["status"] == "succeeded"

    def counts() -> dict[str, float] | None:
        text = metrics(port)
        found = {
            call: float(match.group(1))
            for call in ("receive", "send", "delete", "change_visibility")
            if (match := re.search(rf'api_worker_queue_call_seconds_count\{{call="{call}"\}} (\S+)', text))
        }
        return found if found.get("delete", 0) >= 1 else None

    found = wait_until(counts, 20, "the delete to be timed")
    assert found["receive"] >= 1 and found["send"] >= 1 and "change_visibility" in found

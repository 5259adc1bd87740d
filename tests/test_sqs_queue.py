"""The SQS backend against moto's standalone server, over HTTP."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from queues.base import QueueError, VisibilityChange
from queues.sqs import SqsQueue
from testkit.moto_server import MotoServer
from tests.support import new_queue


@pytest.fixture
def queue_url(sqs: Any) -> str:
    return new_queue(sqs, "jobs")


def test_send_receive_hide_release_delete(queue_url: str) -> None:
    queue = SqsQueue(queue_url)
    message_id = queue.send("job")
    (message,) = queue.receive(10, 1, visibility_timeout=60)
    assert (message.message_id, message.body, message.receive_count) == (message_id, "job", 1)
    assert queue.receive(10, 0, visibility_timeout=60) == []
    queue.change_visibility([VisibilityChange(message.receipt, 0)])
    (again,) = queue.receive(10, 1, visibility_timeout=60)
    assert again.receive_count == 2
    queue.delete([again.receipt])
    assert queue.receive(10, 0, visibility_timeout=0) == []


def test_batches_are_split_into_tens(queue_url: str) -> None:
    queue = SqsQueue(queue_url)
    ids = queue.send_batch([f"job {index}" for index in range(25)])
    assert len(set(ids)) == 25
    received = []
    for _ in range(10):
        batch = queue.receive(25, 0, visibility_timeout=60)
        assert len(batch) <= 10
        received += batch
        if len(received) == 25:
            break
    assert sorted(m.body for m in received) == sorted(f"job {index}" for index in range(25))
    queue.change_visibility([VisibilityChange(m.receipt, 120) for m in received])
    queue.delete([m.receipt for m in received])


def test_reply_queues_by_name_or_url(sqs: Any, queue_url: str) -> None:
    replies = str(sqs.create_queue(QueueName=f"replies-{uuid.uuid4().hex[:8]}")["QueueUrl"])
    queue = SqsQueue(queue_url)
    assert queue.sibling(replies.rsplit("/", 1)[1]).url == replies
    assert queue.sibling(replies).url == replies
    with pytest.raises(ValueError, match="there is no SQS queue named 'no-such-queue'"):
        queue.sibling("no-such-queue")
    with pytest.raises(ValueError, match="neither a queue URL nor an SQS queue name"):
        queue.sibling("bad name")


def test_max_receive_count_comes_from_the_redrive_policy(sqs: Any) -> None:
    dead = sqs.create_queue(QueueName=f"dead-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "4"})
    url = sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    assert SqsQueue(url).max_receive_count() == 4
    assert SqsQueue(dead).max_receive_count() is None


def test_large_messages_travel_through_s3(queue_url: str, moto: MotoServer) -> None:
    bucket = f"payloads-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    queue = SqsQueue(queue_url, large_payload_bucket=bucket)
    body = json.dumps({"data": "x" * 300 * 1024})
    queue.send(body)
    assert len(s3.list_objects_v2(Bucket=bucket).get("Contents", [])) == 1
    (message,) = SqsQueue(queue_url, large_payload_bucket=bucket).receive(1, 1, visibility_timeout=60)
    assert message.body == body
    queue.delete([message.receipt])
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_a_request_in_the_legacy_pointer_format_is_read(sqs: Any, queue_url: str, moto: MotoServer) -> None:
    bucket = f"legacy-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    body = json.dumps(
        {"service": "tool", "queue": "native", "command": {"stdin": {"type": "pipe", "value": "y" * 1000}}}
    )
    s3.put_object(Bucket=bucket, Key="payload-1", Body=body.encode())
    pointer = json.dumps(
        ["com.amazon.sqs.javamessaging.MessageS3Pointer", {"s3BucketName": bucket, "s3Key": "payload-1"}]
    )
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=pointer,
        MessageAttributes={"SQSLargePayloadSize": {"DataType": "Number", "StringValue": str(len(body))}},
    )
    (message,) = SqsQueue(queue_url, large_payload_bucket=bucket).receive(1, 1, visibility_timeout=60)
    assert message.body == body


def test_errors_name_the_call_and_the_queue(queue_url: str) -> None:
    missing = queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    with pytest.raises(QueueError, match=f"receive_message on {missing} failed"):
        SqsQueue(missing).receive(1, 0, visibility_timeout=30)

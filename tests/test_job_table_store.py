"""The job table's conditional writes against moto's DynamoDB over HTTP, and the embedded
queue's cancel requests: claims, refusals, fences, outcomes, cancel marks."""

from __future__ import annotations

import pickle
import time
import uuid
from pathlib import Path

import boto3
import pytest

from journal.job_table import Claim, JobTable, Refusal, StoredResult
from protocol.cancel import CANCEL_EXPIRY_S, CancelRequest, new_cancel_request
from queues.local import LocalQueue
from queues.local_cancels import LocalCancels
from testkit.moto_server import MotoServer, create_job_table


@pytest.fixture
def table(moto: MotoServer) -> JobTable:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    create_job_table(name)
    return JobTable(name)


def test_a_claim_is_refused_while_its_lease_runs_and_taken_over_with_the_next_fence_after(table: JobTable) -> None:
    first = table.claim("job-1", "m1", "box-a", lease_s=60)
    held = table.claim("job-1", "m2", "box-b", lease_s=60)
    assert first == Claim("job-1", 1)
    assert isinstance(held, Refusal) and held.owner == "box-a" and 50 < held.lease_left_s <= 60

    assert table.give_back(first)  # to be retried: the lease ends now
    second = table.claim("job-1", "m2", "box-b", lease_s=60)
    assert second == Claim("job-1", 2)
    assert not table.renew(first, 60) and not table.finish(first, "succeeded", "{}", 3600)  # stale: nothing written
    result = '{"message_id": "m2", "attempt": 2, "status": "failed"}'
    assert table.renew(second, 60) and table.finish(second, "failed", result, 3600)
    finished = table.claim("job-1", "m3", "box-c", lease_s=60)
    assert finished == Refusal(finished_status="failed", finished_as="m2", result=StoredResult("m2", 2, result))
    state = table.state("job-1")
    assert (state["state"], state["result"], state["fence"]) == ("finished", result, 2.0)


def test_a_result_too_large_for_an_item_is_kept_in_the_result_bucket(table: JobTable, bucket: str) -> None:
    large = '{"message_id": "m1", "attempt": 1, "stdout": "%s"}' % ("x" * 400_000)
    with_bucket = JobTable(table.name, bucket)
    claim = with_bucket.claim("job-large", "m1", "box-a", lease_s=60)
    assert isinstance(claim, Claim) and with_bucket.finish(claim, "succeeded", large, 3600)
    refused = table.claim("job-large", "m2", "box-b", lease_s=60)  # any box reads it back, bucket or not
    assert isinstance(refused, Refusal) and refused.result == StoredResult("m1", 1, large)
    assert pickle.loads(pickle.dumps(with_bucket)).result_bucket == bucket

    claim = table.claim("job-large-no-bucket", "m1", "box-a", lease_s=60)
    assert isinstance(claim, Claim) and table.finish(claim, "succeeded", large, 3600)
    refused = table.claim("job-large-no-bucket", "m2", "box-b", lease_s=60)
    assert isinstance(refused, Refusal) and refused.finished_status == "succeeded" and refused.result is None
    assert table.state("job-large-no-bucket")["result_bytes"] == len(large)


def test_an_unreadable_stored_result_leaves_the_job_finished_without_one(
    table: JobTable, caplog: pytest.LogCaptureFixture
) -> None:
    claim = table.claim("job-garbled", "m1", "box-a", lease_s=60)
    assert isinstance(claim, Claim) and table.finish(claim, "succeeded", '{"attempt": "one"', 3600)
    refused = table.claim("job-garbled", "m2", "box-b", lease_s=60)
    assert isinstance(refused, Refusal) and refused.finished_status == "succeeded" and refused.result is None
    assert "a finished job's stored result is unreadable" in caplog.messages


def test_a_job_canceled_before_it_started_is_claimed_with_its_cancel(table: JobTable) -> None:
    cancel = CancelRequest("job-2", "wrong inputs", "ops@box", 1.5)
    table.request(cancel)
    claim = table.claim("job-2", "m1", "box-a", lease_s=60)
    assert claim == Claim("job-2", 1, cancel)
    assert table.requested(["job-2", "job-unknown"]) == {"job-2": cancel}


def test_a_cancel_request_expires_unless_claimed_and_ends_with_its_jobs_outcome(table: JobTable) -> None:
    table.request(new_cancel_request("job-never", None))  # a job no worker ever receives
    assert time.time() + CANCEL_EXPIRY_S - 60 < table.state("job-never")["expires_at"] <= time.time() + CANCEL_EXPIRY_S

    table.request(new_cancel_request("job-c", "stop"))
    claim = table.claim("job-c", "m1", "box-a", lease_s=60)
    assert isinstance(claim, Claim) and claim.cancel is not None
    assert "expires_at" not in table.state("job-c")  # a running job never expires
    assert table.finish(claim, "canceled", '{"message_id": "m1", "attempt": 1}', 3600)
    state = table.state("job-c")
    assert "cancel_at" not in state and state["expires_at"] > time.time()


def test_forgetting_drops_only_a_request_made_before(table: JobTable) -> None:
    table.request(CancelRequest("job-f", "old", "ops@box", 100.0))
    table.forget("job-f", requested_before=50.0)  # a request newer than the job's end stays
    assert table.requested(["job-f"])["job-f"].reason == "old"
    table.forget("job-f", requested_before=100.0)
    table.forget("job-unknown", requested_before=100.0)  # nothing to drop, nothing made
    assert table.requested(["job-f"]) == {} and table.state("job-unknown") == {}


def test_cancel_lookups_batch_past_dynamodbs_limit(table: JobTable) -> None:
    ids = [f"job-{index}" for index in range(130)]
    for job_id in ids[::13]:
        table.request(new_cancel_request(job_id, None))
    found = table.requested(ids)
    assert sorted(found) == sorted(ids[::13])
    assert all(cancel.reason == "no reason given" and "@" in cancel.requested_by for cancel in found.values())


def test_a_table_travels_to_a_child_without_its_client(table: JobTable) -> None:
    table.claim("job-3", "m1", "box-a", lease_s=60)
    copy = pickle.loads(pickle.dumps(table))
    assert copy.name == table.name and copy.state("job-3")["owner"] == "box-a"


def test_the_check_names_a_missing_table_and_a_wrong_key(moto: MotoServer) -> None:
    with pytest.raises(ValueError, match="no-such-table"):
        JobTable("no-such-table").check()
    name = f"misshapen-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}, {"AttributeName": "at", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "job_id", "AttributeType": "S"}, {"AttributeName": "at", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    with pytest.raises(ValueError, match="no sort key"):
        JobTable(name).check()


def test_the_embedded_queue_keeps_cancel_requests_and_finds_a_jobs_message(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "queue.sqlite3")
    by_body_id = queue.send('{"id": "job-a", "service": "s"}')
    queue.send("not json at all")
    marks = pickle.loads(pickle.dumps(LocalCancels(queue.path, queue.name)))
    assert (marks.whereabouts("job-a"), marks.whereabouts(by_body_id), marks.whereabouts("job-b")) == (
        "queued", "queued", None)  # fmt: skip
    queue.receive(10, 0, 30)
    assert marks.whereabouts("job-a") == "received"

    first, second = CancelRequest("job-a", "one", "x@y", 1.0), CancelRequest("job-a", "two", "x@y", 2.0)
    marks.request(first)
    marks.request(second)  # the later request replaces the earlier one
    other_queue = LocalCancels(queue.path, "other")
    assert marks.requested(["job-a", "job-b"]) == {"job-a": second}
    assert other_queue.requested(["job-a"]) == {}


def test_the_embedded_queues_requests_end_with_their_job_or_expire(tmp_path: Path) -> None:
    marks = LocalCancels(LocalQueue(tmp_path / "queue.sqlite3").path, "jobs")
    now = time.time()
    marks.request(CancelRequest("job-old", "never came", "x@y", now - CANCEL_EXPIRY_S - 1))
    marks.request(CancelRequest("job-done", "stop", "x@y", now))
    assert sorted(marks.requested(["job-old", "job-done"])) == ["job-done"]  # the expired one dropped
    marks.forget("job-done", requested_before=now - 1)  # made after that job ended: it stays
    assert sorted(marks.requested(["job-done"])) == ["job-done"]
    marks.forget("job-done", requested_before=now)
    assert marks.requested(["job-done"]) == {}


def test_a_long_cancel_reason_is_cut(tmp_path: Path) -> None:
    request = new_cancel_request("job", "x" * 5000)
    assert len(request.reason) == 1000

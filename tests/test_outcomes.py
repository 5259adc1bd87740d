"""The outcome policy (pool/outcomes.py): the one owner of final or retry, delay and dead letter."""

from __future__ import annotations

import json

from pool.notice_board import JobAccepted
from pool.outcomes import MAX_RETRY_DELAY_S, OutcomePolicy, new_result
from pool.wire import JobEventNote, JobReport
from protocol.result import ErrorInfo, Status, WorkerIdentity
from queues.base import ReceivedMessage

POLICY = OutcomePolicy(max_attempts=3, retry_delay_s=10.0, dead_letter=True)


def message(attempt: int = 1, group: str | None = None) -> ReceivedMessage:
    return ReceivedMessage("m1", "receipt", '{"body": true}', attempt, group_id=group)


def report(status: Status, attempt: int = 1, *, retryable: bool = True) -> JobReport:
    result = new_result("m1", attempt, WorkerIdentity("host", 1))
    result.id, result.status = "job-1", status
    if status in (Status.ERROR, Status.REJECTED):
        result.error = ErrorInfo("staging", "down")
    return JobReport(result, retryable, "replies")


def test_a_finished_job_is_final_and_its_result_serialized_once_with_that_word() -> None:
    outcome, result = POLICY.of_report(message(), report(Status.SUCCEEDED))
    assert (outcome.final, outcome.retry_in_s, outcome.dead_letter_body) == (True, None, None)
    assert (outcome.job_id, outcome.reply_to, outcome.status) == ("job-1", "replies", "succeeded")
    assert json.loads(outcome.result_json)["final"] is True and result.final


def test_a_system_error_is_retried_with_a_growing_delay_until_the_last_attempt() -> None:
    delays = []
    for attempt in (1, 2):
        outcome, _ = POLICY.of_report(message(attempt), report(Status.ERROR, attempt))
        assert not outcome.final and json.loads(outcome.result_json)["final"] is False
        delays.append(outcome.retry_in_s)
    assert delays == [10.0, 20.0]
    last, _ = POLICY.of_report(message(3), report(Status.ERROR, 3))
    assert last.final and last.retry_in_s is None and last.dead_letter_body is None
    assert POLICY.retry_delay(30) == MAX_RETRY_DELAY_S


def test_an_error_not_worth_another_attempt_is_final_at_once() -> None:
    outcome, _ = POLICY.of_report(message(), report(Status.ERROR, retryable=False))
    assert outcome.final


def test_a_rejected_message_is_dead_lettered_when_a_dead_letter_queue_is_set() -> None:
    outcome, _ = POLICY.of_report(message(group="g"), report(Status.REJECTED))
    assert outcome.final and outcome.dead_letter_body == '{"body": true}' and outcome.group_id == "g"
    plain = OutcomePolicy(max_attempts=3, retry_delay_s=10.0, dead_letter=False)
    assert plain.of_report(message(), report(Status.REJECTED))[0].dead_letter_body is None


def test_a_lost_job_is_retried_at_once_and_given_up_and_dead_lettered_on_its_last_attempt() -> None:
    accepted = JobAccepted("m1", "job-1", "svc", "replies")
    outcome, result = POLICY.of_lost_job(message(1), accepted, "the worker child died")
    assert (outcome.final, outcome.retry_in_s, outcome.status) == (False, 0.0, "error")
    assert (result.id, result.service, outcome.reply_to) == ("job-1", "svc", "replies")
    assert outcome.dead_letter_body is None
    last, result = POLICY.of_lost_job(message(3), None, "the worker child died")
    assert last.final and last.dead_letter_body == '{"body": true}'
    assert result.error is not None and "attempt 3 of 3: given up" in result.error.message
    assert result.id == "m1"  # the child said nothing of the job: the message id stands in


def test_an_event_is_no_outcome_and_never_shares_the_results_deduplication_id() -> None:
    event = POLICY.event(message(2, group="g"), JobEventNote("m1", '{"status": "running"}', "replies", 1))
    outcome, _ = POLICY.of_report(message(2, group="g"), report(Status.SUCCEEDED, 2))
    assert (event.reply_to, event.group_id, event.body) == ("replies", "g", '{"status": "running"}')
    assert event.deduplication_id == "m1:2:event-1" != outcome.deduplication_id

"""A worker in a fleet, end to end: real workers on moto's SQS, with loopback fakes of the
instance metadata, the Auto Scaling API and the ECS agent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from testkit.fake_aws_host import FakeAutoScaling, FakeEcsAgent, FakeInstanceMetadata
from testkit.moto_server import free_port
from testkit.waiting import wait_until
from tests.support import Worker, health, job, metrics

pytestmark = pytest.mark.integration


@pytest.fixture
def autoscaling() -> Iterator[FakeAutoScaling]:
    fake = FakeAutoScaling(group="workers")
    fake.start()
    yield fake
    fake.stop()


def on_ec2(imds: FakeInstanceMetadata, **more: str) -> dict[str, str]:
    """A worker's environment as on an instance whose metadata is the fake."""
    return {"AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url, **more}


def sleeping(seconds: float, started: Path | None = None) -> dict[str, Any]:
    arguments: list[dict[str, Any]] = [{"type": "parameter", "name": "--sleep", "value": seconds}]
    if started is not None:
        arguments.append({"type": "parameter", "name": "--started", "value": str(started)})
    return job(arguments)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_spot_notice_hands_a_job_that_cannot_finish_to_another_worker_at_once(
    sqs_worker: Any, imds: FakeInstanceMetadata, tmp_path: Path
) -> None:
    noticed = sqs_worker(environment=on_ec2(imds), options=["--notice-margin", "20"]).start()
    message_id = noticed.submit(sleeping(14, tmp_path / "started"))
    wait_until((tmp_path / "started").exists, 20, "the job to start")
    (tmp_path / "second").mkdir()
    other = Worker(tmp_path / "second", queue=noticed.queue_spec, result_queue=noticed.results.spec).start()
    try:
        leave_at = time.time() + 28  # the job is stopped at +8 s, 20 s before the box goes
        imds.state.spot_action = {"action": "terminate", "time": iso(leave_at)}
        noticed.wait_for_log("stopping: the box is going", timeout=15)
        (released,) = noticed.wait_for_log("releasing messages", timeout=20)
        assert released["reason"] == "interrupted by shutdown"
        assert noticed.wait_exit(timeout=max(1.0, leave_at - time.time())) == 0
        assert time.time() < leave_at  # gone before the box
        (restarted,) = other.wait_for_log("job started", timeout=15)
        delay = _epoch(restarted["time"]) - _epoch(released["time"])
        assert delay < 10  # within seconds, not after the visibility timeout
        final = other.result(message_id, timeout=40)
        assert (final["status"], final["attempt"]) == ("succeeded", 2)
        assert [r for r in other.results_for(message_id) if r["final"]] == [final]  # one final result
    finally:
        other.stop()


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_lifecycle_termination_lets_the_running_job_finish_then_completes_the_hook(
    sqs_worker: Any, imds: FakeInstanceMetadata, autoscaling: FakeAutoScaling, tmp_path: Path
) -> None:
    environment = on_ec2(imds, AWS_ENDPOINT_URL_AUTO_SCALING=autoscaling.url)
    options = ["--lifecycle-hook", "drain-hook", "--lifecycle-heartbeat", "1"]
    worker = sqs_worker(environment=environment, options=options).start()
    running = worker.submit(sleeping(6, tmp_path / "started"))
    wait_until((tmp_path / "started").exists, 20, "the job to start")
    imds.state.lifecycle_state = "Terminated"
    worker.wait_for_log("stopping: the box is going", timeout=15)
    waiting = worker.submit(sleeping(0))
    assert worker.result(running)["status"] == "succeeded"
    assert worker.wait_exit(timeout=30) == 0
    assert len(worker.log_records_with("job started")) == 1 and worker.results_for(waiting) == []
    (completed,) = autoscaling.called("CompleteLifecycleAction")
    assert completed == {
        "LifecycleHookName": "drain-hook",
        "AutoScalingGroupName": "workers",
        "LifecycleActionResult": "CONTINUE",
        "InstanceId": "i-0123456789abcdef0",
    }
    assert autoscaling.called("RecordLifecycleActionHeartbeat")  # while the job ran
    completion = autoscaling.calls.index(next(c for c in autoscaling.calls if c.action == "CompleteLifecycleAction"))
    assert completion == len(autoscaling.calls) - 1  # the last call, after the result went out


def test_a_rebalance_recommendation_drains_and_stays_healthy(sqs_worker: Any, imds: FakeInstanceMetadata) -> None:
    port = free_port()
    worker = sqs_worker(environment=on_ec2(imds), options=["--metrics-port", str(port)]).start()
    assert worker.result(worker.submit(sleeping(0)))["status"] == "succeeded"
    imds.state.rebalance = {"noticeTime": iso(time.time())}
    worker.wait_for_log("drained: no new jobs until resumed", timeout=15)
    later = worker.submit(sleeping(0))

    def noticed() -> tuple[int, dict[str, Any]] | None:
        answer = health(port)
        return answer if "rebalance" in answer[1].get("summary", "") else None

    status, body = wait_until(noticed, 20, "/healthz to tell of the notice")
    assert status == 200 and "no new jobs" in body["summary"]
    assert 'api_worker_interruptions_total{source="rebalance"} 1.0' in metrics(port)
    assert worker.results_for(later) == []


@pytest.mark.parametrize("kind", ["asg", "ecs"])
def test_three_jobs_back_to_back_protect_the_box_once(
    sqs_worker: Any, imds: FakeInstanceMetadata, autoscaling: FakeAutoScaling, kind: str
) -> None:
    agent = FakeEcsAgent()
    agent.start()
    try:
        environment = on_ec2(imds, AWS_ENDPOINT_URL_AUTO_SCALING=autoscaling.url, ECS_AGENT_URI=agent.url)
        options = ["--scale-in-protection", kind, "--protect-idle-grace", "2"]
        worker = sqs_worker(environment=environment, options=options).start()
        for message_id in [worker.submit(sleeping(0.5)) for _ in range(3)]:
            assert worker.result(message_id)["status"] == "succeeded"

        def states() -> list[bool]:
            if kind == "ecs":
                return agent.states()
            return [call["ProtectedFromScaleIn"] == "true" for call in autoscaling.called("SetInstanceProtection")]

        wait_until(lambda: len(states()) >= 2, 20, "protection to be lifted")
        assert states() == [True, False]
    finally:
        agent.stop()


@pytest.mark.parametrize("fault", ["absent", "slow", "garbage", "expired"])
def test_metadata_that_fails_never_stops_the_work(sqs_worker: Any, imds: FakeInstanceMetadata, fault: str) -> None:
    environment = on_ec2(imds)
    if fault == "absent":
        environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    elif fault in ("slow", "garbage"):
        imds.state.mode, imds.state.delay_s = fault, 3.0
        imds.state.spot_action = {"action": "terminate", "time": iso(time.time() + 600)}
    worker = sqs_worker(environment=environment).start()
    if fault == "expired":
        wait_until(lambda: imds.state.tokens_issued >= 1, 20, "a token")
        imds.expire_tokens()
        wait_until(lambda: imds.state.tokens_issued >= 2, 20, "a new token after the 401")
    assert worker.result(worker.submit(sleeping(0)))["status"] == "succeeded"
    if fault == "absent":
        worker.wait_for_log("instance metadata unreadable; notices unknown until it answers", timeout=15)
    else:  # two polls or more: a problem that lasts is told once
        polls = len(imds.state.requests)
        wait_until(lambda: len(imds.state.requests) > polls + 1, 20, "another poll")
    unreadable = worker.log_records_with("instance metadata unreadable; notices unknown until it answers")
    assert len(unreadable) == (0 if fault == "expired" else 1)
    assert not worker.log_records_with("stopping: the box is going")


def test_a_failing_protection_call_is_shown_and_retried_but_never_unhealthy(
    sqs_worker: Any, imds: FakeInstanceMetadata
) -> None:
    failing = FakeAutoScaling(group="workers", fail=frozenset({"SetInstanceProtection"}))
    failing.start()
    try:
        port = free_port()
        environment = on_ec2(imds, AWS_ENDPOINT_URL_AUTO_SCALING=failing.url)
        options = ["--scale-in-protection", "asg", "--metrics-port", str(port)]
        worker = sqs_worker(environment=environment, options=options).start()
        message_id = worker.submit(sleeping(8))
        wait_until(lambda: "scale-in:   protection failing, retried:" in worker.status_text(), 30, "the failure shown")
        assert health(port)[0] == 200
        wait_until(lambda: len(failing.called("SetInstanceProtection")) > 5, 30, "the call tried again")
        assert worker.result(message_id)["status"] == "succeeded"
        assert len(worker.log_records_with("scale-in protection could not be set; trying again")) == 1
    finally:
        failing.stop()


def test_a_hook_that_cannot_be_completed_is_left_to_time_out_and_the_log_says_so(
    sqs_worker: Any, imds: FakeInstanceMetadata
) -> None:
    failing = FakeAutoScaling(group="workers", fail=frozenset({"CompleteLifecycleAction"}))
    failing.start()
    try:
        environment = on_ec2(imds, AWS_ENDPOINT_URL_AUTO_SCALING=failing.url)
        worker = sqs_worker(environment=environment, options=["--lifecycle-hook", "drain-hook"]).start()
        imds.state.lifecycle_state = "Terminated"
        assert worker.wait_exit(timeout=60) == 0
        (logged,) = worker.log_records_with("could not complete the lifecycle action; the hook is left to time out")
        assert logged["hook"] == "drain-hook"
        assert len(failing.called("CompleteLifecycleAction")) > 1  # retried before giving up
    finally:
        failing.stop()

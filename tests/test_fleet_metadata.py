"""The fleet's parts against loopback fakes: the IMDSv2 client and its notices, Auto Scaling
calls, ECS task protection, scale-in protection on busy and idle transitions, and the rule
that nothing asks the metadata service off EC2."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assembly.fleet import _metadata
from fleet.autoscaling import FleetCallFailed, InstanceAutoScaling
from fleet.ec2 import on_ec2
from fleet.ecs_protection import TaskProtection, protection_minutes
from fleet.metadata import HOP_LIMIT_HINT, InstanceMetadata, MetadataUnavailable
from fleet.notices import read_notices
from pool.upkeep.scale_in import GroupProtector, ScaleInProtection, TaskProtector
from testkit.clock import FakeClock
from testkit.fake_aws_host import FakeAutoScaling, FakeEcsAgent, FakeInstanceMetadata
from testkit.moto_server import free_port


@pytest.fixture
def autoscaling(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAutoScaling]:
    fake = FakeAutoScaling(group="workers")
    fake.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_AUTO_SCALING", fake.url)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield fake
    fake.stop()


def test_a_token_is_asked_for_once_and_a_missing_path_means_nothing(imds: FakeInstanceMetadata) -> None:
    metadata = InstanceMetadata(imds.url)
    assert read_notices(metadata, spot=True, lifecycle=True) == []  # 404s, and InService
    assert metadata.get("latest/meta-data/instance-id") == "i-0123456789abcdef0"
    assert imds.state.tokens_issued == 1
    assert imds.state.requests[0] == "PUT /latest/api/token"


def test_a_spot_notice_says_when_the_box_goes(imds: FakeInstanceMetadata) -> None:
    imds.state.spot_action = {"action": "terminate", "time": "2026-12-07T10:00:00Z"}
    imds.state.rebalance = {"noticeTime": "2026-12-07T09:55:00Z"}
    imds.state.lifecycle_state = "Terminated"
    notices = read_notices(InstanceMetadata(imds.url), spot=True, lifecycle=True)
    assert [notice.source for notice in notices] == ["spot", "rebalance", "lifecycle"]
    spot, rebalance, _ = notices
    assert spot.leave_by == pytest.approx(1796637600.0) and not spot.soft
    assert rebalance.soft and rebalance.leave_by is None
    assert read_notices(InstanceMetadata(imds.url), spot=False, lifecycle=False) == []


def test_an_expired_token_is_renewed_once(imds: FakeInstanceMetadata) -> None:
    metadata = InstanceMetadata(imds.url)
    assert metadata.get("latest/meta-data/instance-id") == "i-0123456789abcdef0"
    imds.expire_tokens()  # before the client thought they would
    assert metadata.get("latest/meta-data/instance-id") == "i-0123456789abcdef0"
    assert imds.state.tokens_issued == 2


@pytest.mark.parametrize("mode", ["slow", "garbage"])
def test_a_slow_or_garbled_service_is_unavailable_not_a_crash(imds: FakeInstanceMetadata, mode: str) -> None:
    imds.state.mode, imds.state.delay_s = mode, 3.0
    imds.state.spot_action = {"action": "terminate", "time": "2026-12-07T10:00:00Z"}
    began = time.monotonic()
    with pytest.raises(MetadataUnavailable) as raised:
        read_notices(InstanceMetadata(imds.url, timeout_s=0.5), spot=True, lifecycle=False)
    assert time.monotonic() - began < 2.5  # bounded by the timeout, not the service
    if mode == "slow":
        assert str(raised.value) == HOP_LIMIT_HINT  # no token in time: the container's hop limit, most likely


def test_unreadable_spot_json_is_unavailable(imds: FakeInstanceMetadata) -> None:
    imds.state.spot_action = {"not": "an action"}
    with pytest.raises(MetadataUnavailable, match="spot/instance-action"):
        read_notices(InstanceMetadata(imds.url), spot=True, lifecycle=False)


def test_no_service_at_all_is_unavailable() -> None:
    with pytest.raises(MetadataUnavailable):
        InstanceMetadata(f"http://127.0.0.1:{free_port()}", timeout_s=0.5).get("latest/meta-data/instance-id")


def test_off_ec2_the_metadata_service_is_never_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not on_ec2((tmp_path / "absent",), tmp_path / "absent")
    vendor = tmp_path / "sys_vendor"
    vendor.write_text("Amazon EC2\n")
    assert on_ec2((vendor,), tmp_path / "absent")
    uuid = tmp_path / "uuid"
    uuid.write_text("ec2e1916-9099-7caf-fd21-012345abcdef\n")
    assert on_ec2((tmp_path / "absent",), uuid)
    monkeypatch.setattr("assembly.fleet.on_ec2", lambda: False)
    assert _metadata("auto", {}) is None and _metadata("off", {}) is None
    assert _metadata("auto", {"AWS_EC2_METADATA_DISABLED": "true", "AWS_EC2_METADATA_SERVICE_ENDPOINT": "x"}) is None
    named = _metadata("auto", {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1/"})
    assert named is not None and named.endpoint == "http://127.0.0.1:1"


def test_instance_protection_goes_on_when_busy_and_off_after_the_idle_grace(
    imds: FakeInstanceMetadata, autoscaling: FakeAutoScaling
) -> None:
    clock = FakeClock()
    protection = ScaleInProtection(GroupProtector(InstanceAutoScaling(InstanceMetadata(imds.url))), 60, clock)
    for busy in (True, False, True, False, True):  # three jobs back to back
        protection.observe(busy)
        protection.act()
    protection.observe(False)
    clock.advance(59)
    protection.act()
    assert [call["ProtectedFromScaleIn"] for call in autoscaling.called("SetInstanceProtection")] == ["true"]
    clock.advance(1)
    protection.act()
    protection.act()
    calls = autoscaling.called("SetInstanceProtection")
    assert [call["ProtectedFromScaleIn"] for call in calls] == ["true", "false"]
    assert calls[0]["AutoScalingGroupName"] == "workers" and calls[0]["InstanceIds.member.1"] == "i-0123456789abcdef0"


def test_a_failing_protection_call_is_tried_again_and_never_raises(
    imds: FakeInstanceMetadata, autoscaling: FakeAutoScaling
) -> None:
    autoscaling.fail.add("SetInstanceProtection")
    protection = ScaleInProtection(GroupProtector(InstanceAutoScaling(InstanceMetadata(imds.url))), 60, FakeClock())
    protection.observe(True)
    protection.act()
    assert not protection.protected and protection.problem is not None
    autoscaling.fail.clear()
    protection.act()
    assert protection.protected and protection.problem is None


def test_ecs_protection_expires_with_the_job_timeout_and_is_renewed_at_half_life() -> None:
    agent = FakeEcsAgent()
    agent.start()
    try:
        clock = FakeClock()
        minutes = protection_minutes(3600)
        protection = ScaleInProtection(TaskProtector(TaskProtection(agent.url), minutes), 60, clock)
        protection.observe(True)
        protection.act()
        clock.advance(29 * 60)
        protection.act()
        clock.advance(60)
        protection.act()  # half of the hour: renewed
        protection.observe(False)
        clock.advance(60)
        protection.act()
        assert agent.states() == [True, True, False]
        assert agent.calls[0] == {"ProtectionEnabled": True, "ExpiresInMinutes": 60}
        agent.failure = "TASK_NOT_VALID"
        with pytest.raises(FleetCallFailed, match="TASK_NOT_VALID"):
            TaskProtection(agent.url).set(True, 5)
    finally:
        agent.stop()
    assert (protection_minutes(1), protection_minutes(61), protection_minutes(10**9)) == (1, 2, 2880)


def test_the_lifecycle_calls_name_the_hook_the_group_and_the_instance(
    imds: FakeInstanceMetadata, autoscaling: FakeAutoScaling
) -> None:
    calls: Any = InstanceAutoScaling(InstanceMetadata(imds.url))()
    calls.heartbeat("drain")
    calls.complete("drain")
    (completed,) = autoscaling.called("CompleteLifecycleAction")
    assert completed == {
        "LifecycleHookName": "drain",
        "AutoScalingGroupName": "workers",
        "LifecycleActionResult": "CONTINUE",
        "InstanceId": "i-0123456789abcdef0",
    }
    assert len(autoscaling.called("RecordLifecycleActionHeartbeat")) == 1
    assert len(autoscaling.called("DescribeAutoScalingInstances")) == 1  # the group, found once

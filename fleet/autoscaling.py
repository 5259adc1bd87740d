"""The Auto Scaling calls a worker makes about its own instance: find its group, protect it
from scale-in while busy, and keep and complete a termination lifecycle hook. Each call is
bounded (short timeouts) and retried with jitter by botocore's standard retry mode; a
`FleetCallFailed` means the retries ran out."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any

from fleet.metadata import InstanceMetadata, MetadataUnavailable

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
ATTEMPTS = 5
INSTANCE_ID_PATH = "latest/meta-data/instance-id"


class FleetCallFailed(Exception):
    pass


def bounded_client(service: str) -> Any:
    """A boto3 client whose every call is bounded and retried with jitter."""
    import boto3  # noqa: PLC0415 (only a worker in a fleet needs it)
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"mode": "standard", "max_attempts": ATTEMPTS},
    )
    return boto3.session.Session().client(service, config=config)


class AutoScaling:
    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id

    @cached_property
    def _client(self) -> Any:
        return bounded_client("autoscaling")

    def _call(self, action: str, **parameters: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            answer: dict[str, Any] = getattr(self._client, action)(**parameters)
        except (BotoCoreError, ClientError) as exc:
            raise FleetCallFailed(f"autoscaling {action} for {self.instance_id} failed: {exc}") from exc
        return answer

    @cached_property
    def group(self) -> str:
        """The instance's Auto Scaling group (FleetCallFailed: unknown to Auto Scaling)."""
        answer = self._call("describe_auto_scaling_instances", InstanceIds=[self.instance_id])
        instances = answer.get("AutoScalingInstances") or []
        if not instances:
            raise FleetCallFailed(f"instance {self.instance_id} is in no Auto Scaling group")
        return str(instances[0]["AutoScalingGroupName"])

    def protect(self, protected: bool) -> None:
        self._call(
            "set_instance_protection",
            InstanceIds=[self.instance_id],
            AutoScalingGroupName=self.group,
            ProtectedFromScaleIn=protected,
        )

    def heartbeat(self, hook: str) -> None:
        self._call(
            "record_lifecycle_action_heartbeat",
            LifecycleHookName=hook,
            AutoScalingGroupName=self.group,
            InstanceId=self.instance_id,
        )

    def complete(self, hook: str) -> None:
        self._call(
            "complete_lifecycle_action",
            LifecycleHookName=hook,
            AutoScalingGroupName=self.group,
            LifecycleActionResult="CONTINUE",
            InstanceId=self.instance_id,
        )


class InstanceAutoScaling:
    """Auto Scaling calls about this instance, its id read from the metadata on first use
    (MetadataUnavailable until it can be, and always without metadata)."""

    def __init__(self, metadata: InstanceMetadata | None) -> None:
        self.metadata = metadata
        self._lock = threading.Lock()
        self._client: AutoScaling | None = None

    def __call__(self) -> AutoScaling:
        with self._lock:
            if self._client is None:
                if self.metadata is None:
                    raise MetadataUnavailable("no instance metadata: this instance's id is unknown")
                instance_id = (self.metadata.get(INSTANCE_ID_PATH) or "").strip()
                if not instance_id:
                    raise MetadataUnavailable("the instance metadata has no instance id")
                self._client = AutoScaling(instance_id)
            return self._client

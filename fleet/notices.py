"""What the instance metadata says of the box's future: a Spot interruption, a rebalance
recommendation, or the Auto Scaling group's lifecycle state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import msgspec

from fleet.metadata import InstanceMetadata, MetadataUnavailable

SPOT_PATH = "latest/meta-data/spot/instance-action"
REBALANCE_PATH = "latest/meta-data/events/recommendations/rebalance"
LIFECYCLE_PATH = "latest/meta-data/autoscaling/target-lifecycle-state"
T = TypeVar("T", bound=msgspec.Struct)
IDLE = "idle"  # not the box's notice: the worker's own, once it has had nothing to do for a while
SPOT_WARNING_S = 120.0  # AWS's notice, for an action whose time cannot be read


@dataclass(frozen=True)
class Notice:
    source: str  # spot, rebalance or lifecycle; or idle (--exit-when-idle)
    detail: str  # what the metadata said, for the log and the status page
    leave_by: float | None  # epoch seconds by which the box goes; None: no fixed time

    @property
    def soft(self) -> bool:
        """A recommendation: take no new jobs, finish the running ones, stay up."""
        return self.source == "rebalance"

    @property
    def stopping_message(self) -> str:
        return "stopping: idle long enough (--exit-when-idle)" if self.source == IDLE else "stopping: the box is going"


class _SpotAction(msgspec.Struct):
    action: str
    time: str


class _Rebalance(msgspec.Struct, rename="camel"):
    notice_time: str = ""


def read_notices(metadata: InstanceMetadata, *, spot: bool, lifecycle: bool) -> list[Notice]:
    """The notices the metadata holds now: `spot`, a Spot interruption and a rebalance
    recommendation; `lifecycle`, the target lifecycle state Terminated (MetadataUnavailable:
    it could not be asked, or answered something unreadable)."""
    found = []
    action = metadata.get(SPOT_PATH) if spot else None
    if action is not None:
        found.append(_spot_notice(action))
    rebalance = metadata.get(REBALANCE_PATH) if spot else None
    if rebalance is not None:
        notice_time = _decode(rebalance, _Rebalance, REBALANCE_PATH).notice_time
        found.append(Notice("rebalance", f"rebalance recommended at {notice_time or 'an unknown time'}", None))
    if lifecycle:
        state = metadata.get(LIFECYCLE_PATH)
        if state is not None and state.strip() == "Terminated":
            found.append(Notice("lifecycle", "target lifecycle state Terminated", None))
    return found


def _spot_notice(body: str) -> Notice:
    action = _decode(body, _SpotAction, SPOT_PATH)
    leave_by = _epoch(action.time)
    if leave_by is None:
        leave_by = time.time() + SPOT_WARNING_S
    return Notice("spot", f"Spot {action.action} at {action.time}", leave_by)


def _decode(body: str, kind: type[T], path: str) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        raise MetadataUnavailable(f"instance metadata {path}: unreadable answer ({exc})") from None


def _epoch(stamp: str) -> float | None:
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None

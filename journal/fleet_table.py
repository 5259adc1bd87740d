"""The fleet's items in the job table: the live boxes of a queue, and the jobs waiting for a
shape.

A queue's boxes are one item (key `api-worker-fleet:QUEUE`) holding a map from each worker's
id to its shape, kinds, draining flag and expiry: one GetItem lists them, and each worker
writes only its own entry. A job that waits for another shape keeps, in its own item, when
its wait began, the shape it waits for and the messages already passed on for it, so that a
wait is bounded across boxes and a message is passed on once."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from fleet.shapes import LiveBox, Shape
from journal.job_table import KEY, ConditionFailed, JobTable
from protocol.request import RESERVED_ID_PREFIX as FLEET_KEY_PREFIX

PRUNE_AFTER_S = 600.0  # an entry expired this long ago is removed by the next box that registers
WAIT_EXPIRY_S = 86400  # an item that holds only a job's wait


class FleetRegister:
    """The queue's boxes in the job table. Picklable, like the table."""

    def __init__(self, table: JobTable, queue: str) -> None:
        self.table = table
        self.queue = queue
        self.key = {KEY: {"S": FLEET_KEY_PREFIX + queue}}

    def register(self, box: LiveBox, dead: list[str] | None = None) -> None:
        """Write this box's entry (and remove the long-dead entries `dead` names)."""
        names = {"#box": box.box_id}
        update = "SET #boxes.#box = :entry"
        for index, box_id in enumerate(dead or []):
            names[f"#dead{index}"] = box_id
        if dead:
            update += " REMOVE " + ", ".join(f"#boxes.#dead{index}" for index in range(len(dead)))
        for _ in range(3):  # the map is made by the first box; a race with another is lost once
            try:
                self.table.call(
                    "update_item",
                    Key=self.key,
                    UpdateExpression=update,
                    ConditionExpression="attribute_exists(#boxes)",
                    ExpressionAttributeNames={"#boxes": "boxes", **names},
                    ExpressionAttributeValues={":entry": _entry(box)},
                )
                return
            except ConditionFailed:
                pass
            try:
                self.table.call(
                    "update_item",
                    Key=self.key,
                    UpdateExpression="SET #boxes = :boxes, kind = :kind, queue = :queue",
                    ConditionExpression="attribute_not_exists(#boxes)",
                    ExpressionAttributeNames={"#boxes": "boxes"},
                    ExpressionAttributeValues={
                        ":boxes": {"M": {box.box_id: _entry(box)}},
                        ":kind": {"S": "fleet"},
                        ":queue": {"S": self.queue},
                    },
                )
                return
            except ConditionFailed:
                pass

    def leave(self, box_id: str) -> None:
        with contextlib.suppress(ConditionFailed):  # never registered
            self.table.call(
                "update_item",
                Key=self.key,
                UpdateExpression="REMOVE #boxes.#box",
                ConditionExpression="attribute_exists(#boxes)",
                ExpressionAttributeNames={"#boxes": "boxes", "#box": box_id},
            )

    def boxes(self) -> list[LiveBox]:
        """Every entry, expired or not (a reader filters), in the order of their ids."""
        item = self.table.call("get_item", Key=self.key, ConsistentRead=True).get("Item", {})
        entries = item.get("boxes", {}).get("M", {})
        found = [_box(box_id, entry.get("M", {})) for box_id, entry in sorted(entries.items())]
        return [box for box in found if box is not None]


def live(boxes: list[LiveBox], now: float) -> list[LiveBox]:
    return [box for box in boxes if box.expires_at > now]


def long_dead(boxes: list[LiveBox], now: float) -> list[str]:
    return [box.box_id for box in boxes if box.expires_at < now - PRUNE_AFTER_S]


def _entry(box: LiveBox) -> dict[str, Any]:
    shape = box.shape
    fields: dict[str, Any] = {
        "memory": {"N": str(shape.memory_bytes)},
        "cpus": {"N": repr(shape.cpus)},
        "gpus": {"N": str(shape.gpus)},
        "queues": {"L": [{"S": queue} for queue in box.queues]},
        "services": {"L": [{"S": service} for service in box.services]},
        "draining": {"BOOL": box.draining},
        "expires_at": {"N": repr(box.expires_at)},
    }
    if shape.disk_bytes is not None:
        fields["disk"] = {"N": str(shape.disk_bytes)}
    return {"M": fields}


def _box(box_id: str, entry: dict[str, Any]) -> LiveBox | None:
    """An entry as registered; None for one this version cannot read (left to expire)."""
    try:
        disk = int(entry["disk"]["N"]) if "disk" in entry else None
        memory, cpus, gpus = int(entry["memory"]["N"]), float(entry["cpus"]["N"]), int(entry["gpus"]["N"])
        return LiveBox(
            box_id=box_id,
            shape=Shape.sized(memory, cpus, gpus, disk),
            queues=tuple(value["S"] for value in entry["queues"]["L"]),
            services=tuple(value["S"] for value in entry["services"]["L"]),
            draining=bool(entry["draining"]["BOOL"]),
            expires_at=float(entry["expires_at"]["N"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Wait:
    """A job's wait for a shape, as its item keeps it."""

    since: float | None = None  # epoch seconds; None: it has not waited
    passed_on: frozenset[str] = frozenset()  # the messages already passed on for it
    handed_on: str | None = None  # the queue it was handed on to, once


class WaitMarks:
    """Jobs' waits for a shape, in their items of the job table."""

    def __init__(self, table: JobTable) -> None:
        self.table = table

    def wait_of(self, job_id: str) -> Wait:
        item = self.table.call(
            "get_item",
            Key={KEY: {"S": job_id}},
            ConsistentRead=True,
            ProjectionExpression="waiting_since, passed_on, handed_on",
        ).get("Item", {})
        since = item.get("waiting_since", {}).get("N")
        return Wait(
            since=float(since) if since is not None else None,
            passed_on=frozenset(item.get("passed_on", {}).get("SS", [])),
            handed_on=item.get("handed_on", {}).get("S"),
        )

    def passed(self, job_id: str, message_id: str | None, shape: str, handed_on: str | None) -> None:
        """Mark the job waiting for `shape`, and the message passed on (its copy is out), if
        given: its redelivery is then deleted, not passed again. An item that holds only the
        wait expires a day after it began; a claim or the job's outcome sets its own expiry."""
        now = time.time()
        update = "SET waiting_since = if_not_exists(waiting_since, :now), waiting_for = :shape"
        update += ", expires_at = if_not_exists(expires_at, :expires)"
        values: dict[str, Any] = {
            ":now": {"N": repr(now)},
            ":shape": {"S": shape},
            ":one": {"N": "1"},
            ":expires": {"N": str(int(now + WAIT_EXPIRY_S))},
        }
        if handed_on is not None:
            update += ", handed_on = :queue"
            values[":queue"] = {"S": handed_on}
        update += " ADD passes :one"
        if message_id is not None:
            update += ", passed_on :message"
            values[":message"] = {"SS": [message_id]}
        key = {KEY: {"S": job_id}}
        self.table.call("update_item", Key=key, UpdateExpression=update, ExpressionAttributeValues=values)

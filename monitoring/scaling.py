"""The scaling signal for an autoscaler (`GET /scaling`, `api_worker_slots_wanted`): the slots
wanted are the jobs running and held here plus the queue's visible backlog. The backlog is the
whole queue's, the same on every worker of it; the running and held jobs are this worker's.
`fleet_wanted` is the whole queue's: its visible backlog plus the messages in flight on every
worker (running, held, or hidden for a retry), the same figure on every worker, which an
autoscaler reading one worker can divide by the slots per worker. `waiting_for` counts the jobs
this worker passed on lately, by the shape they wait for: a group of that shape scaled to zero
has work."""

from __future__ import annotations

from typing import Any

from monitoring.state import WorkerState
from queues.base import QueueDepth


def scaling_signal(state: WorkerState, depth: QueueDepth | None) -> dict[str, Any]:
    queued = None if depth is None else depth.visible
    in_flight = None if depth is None else depth.in_flight
    return {
        "slots": state.workers,
        "busy": state.busy,
        "held": state.held,
        "queued": queued,
        "wanted": state.busy + state.held + (queued or 0),
        "in_flight": in_flight,
        "fleet_wanted": None if depth is None else depth.visible + depth.in_flight,
        "waiting_for": state.waiting_for,
    }

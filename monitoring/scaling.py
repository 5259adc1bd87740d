"""The scaling signal for an autoscaler (`GET /scaling`, `api_worker_slots_wanted`): the slots
wanted are the jobs running and held here plus the queue's visible backlog. The backlog is the
whole queue's, the same on every worker of it; the running and held jobs are this worker's.
`waiting_for` counts the jobs this worker passed on lately, by the shape they wait for: a
group of that shape scaled to zero has work."""

from __future__ import annotations

from typing import Any

from monitoring.state import WorkerState


def scaling_signal(state: WorkerState, queued: int | None) -> dict[str, Any]:
    wanted = state.busy + state.held + (queued or 0)
    return {
        "slots": state.workers,
        "busy": state.busy,
        "held": state.held,
        "queued": queued,
        "wanted": wanted,
        "waiting_for": state.waiting_for,
    }

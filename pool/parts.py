"""What the composition root builds for the supervisor, and the protocol of its timed parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from monitoring.monitor import Monitor
from pool.holding.custody import Custody
from pool.holding.intake import AnyIntake
from pool.holding.prefetch import Prefetch
from pool.outcomes import OutcomePolicy
from pool.settling.courier import ResultCourier
from pool.settling.ledger import Ledger
from pool.settling.outbox import Outbox
from pool.slots import SlotTable
from pool.upkeep.cancel_watch import AnyCancelWatch
from pool.upkeep.image_cache import AnyImageCache
from pool.upkeep.scratch_space import ScratchSpace
from pool.waker import Waker
from queues.base import JobQueue


class TimedPart(Protocol):
    def next_due(self) -> float | None:
        """When the loop must next look at it (monotonic); None: not before something happens."""
        ...


@dataclass(frozen=True)
class SupervisorSettings:
    shutdown_grace_s: float
    stall_limit_s: float  # a loop this long without an iteration is unhealthy


@dataclass(frozen=True)
class SupervisorParts:
    """What the composition root builds and wires for the supervisor."""

    queue: JobQueue
    slots: SlotTable
    custody: Custody
    intake: AnyIntake
    outbox: Outbox
    courier: ResultCourier
    ledger: Ledger
    policy: OutcomePolicy
    prefetch: Prefetch
    monitor: Monitor
    waker: Waker
    space: ScratchSpace
    images: AnyImageCache  # the docker image cache
    cancels: AnyCancelWatch  # cancel requests for running jobs, and the job table's health

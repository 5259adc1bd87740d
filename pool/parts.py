"""What the composition root builds for the supervisor, and the protocol of its timed parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from common.clock import SYSTEM_CLOCK, Clock
from fleet.notices import Notice
from monitoring.monitor import Monitor
from pool.holding.custody import Custody
from pool.holding.intake import AnyIntake
from pool.holding.passing_on import PassingOn
from pool.holding.prefetch import Prefetch
from pool.outcomes import OutcomePolicy
from pool.settling.courier import ResultCourier
from pool.settling.job_ends import JobEnds
from pool.settling.job_history import JobHistory
from pool.settling.ledger import Ledger
from pool.settling.outbox import Outbox
from pool.slots import SlotTable
from pool.upkeep.cancel_watch import CancelWatch
from pool.upkeep.fleet_watch import FleetWatch
from pool.upkeep.idle_exit import IdleExit
from pool.upkeep.image_cache import ImageCache
from pool.upkeep.scratch_space import ScratchSpace
from pool.waker import Waker
from queues.base import JobQueue


class Upkeep(Protocol):
    """A periodic part of the supervisor (the scratch reserve, the image cache, the cancel
    watch): started and stopped with it, ticked on every loop iteration (it acts once due),
    its problem shown in /healthz. Its collaborators come at construction."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def next_due(self) -> float | None: ...

    def problem(self) -> str | None: ...

    def tick(self) -> None: ...


class TimedPart(Protocol):
    def next_due(self) -> float | None:
        """When the loop must next look at it (monotonic); None: not before something happens."""
        ...


@dataclass(frozen=True)
class SupervisorSettings:
    shutdown_grace_s: float
    stall_limit_s: float  # a loop this long without an iteration is unhealthy
    notice_margin_s: float = 20.0  # running jobs stop this long before a noticed box goes


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
    images: ImageCache | None  # the docker image cache, for a worker that runs docker jobs
    cancels: CancelWatch | None  # cancel requests for running jobs, where they are kept; the table's health
    fleet: FleetWatch | None  # instance notices and scale-in protection, in a fleet
    upkeep: tuple[Upkeep, ...]  # the periodic parts, ticked by the loop: space, and images, cancels, fleet if any
    history: JobHistory
    ends: JobEnds
    passing_on: PassingOn | None = None  # jobs too big for this box, where the fleet has shapes
    idle_exit: IdleExit | None = None  # --exit-when-idle

    def notices(self) -> list[Notice]:
        """What told the worker to leave (or drain) since the last look: the box's notices, and
        its own once idle long enough."""
        found = [] if self.fleet is None else self.fleet.notices()
        return found + ([] if self.idle_exit is None else self.idle_exit.notices())

    clock: Clock = SYSTEM_CLOCK  # what the loop reads; the parts were each given the same

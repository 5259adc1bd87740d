"""Scale-in protection while busy: one call when the box turns busy, one when it has been idle
for the grace, never one per job. ECS protection expires, so it is renewed at half its life
while the box stays busy. A call that fails is logged and tried again at the next step; it
never touches a job."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from common.clock import SYSTEM_CLOCK, Clock
from fleet.autoscaling import AutoScaling, FleetCallFailed
from fleet.ecs_protection import TaskProtection
from monitoring.metrics import set_scale_in_protected

log = logging.getLogger(__name__)


class Protector(Protocol):
    kind: str  # asg or ecs
    renew_s: float | None  # how often a protection is set again while busy; None: it lasts

    def set(self, protected: bool) -> None: ...


class GroupProtector:
    kind: str = "asg"
    renew_s: float | None = None

    def __init__(self, autoscaling: Callable[[], AutoScaling]) -> None:
        self.autoscaling = autoscaling

    def set(self, protected: bool) -> None:
        self.autoscaling().protect(protected)


class TaskProtector:
    kind: str = "ecs"

    def __init__(self, agent: TaskProtection, minutes: int) -> None:
        self.agent = agent
        self.minutes = minutes
        self.renew_s: float | None = minutes * 60 / 2

    def set(self, protected: bool) -> None:
        self.agent.set(protected, self.minutes)


class ScaleInProtection:
    def __init__(self, protector: Protector, idle_grace_s: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.protector = protector
        self.idle_grace_s = idle_grace_s
        self.clock = clock
        self._lock = threading.Lock()
        self._busy = False
        self._idle_since = clock.monotonic()
        self.protected = False
        self._renew_at: float | None = None
        self.problem: str | None = None  # the last call's failure, until one goes through

    def observe(self, busy: bool) -> None:
        """Whether any job runs or waits here now (the loop's word, every iteration)."""
        with self._lock:
            if self._busy and not busy:
                self._idle_since = self.clock.monotonic()
            self._busy = busy

    def act(self) -> None:
        """On the fleet thread: protect on idle to busy, renew while busy, unprotect once idle
        for the grace."""
        with self._lock:
            busy, idle_since = self._busy, self._idle_since
        now = self.clock.monotonic()
        if busy and (not self.protected or (self._renew_at is not None and now >= self._renew_at)):
            self._set(True, now)
        elif not busy and self.protected and now - idle_since >= self.idle_grace_s:
            self._set(False, now)

    def release(self) -> None:
        """At exit: a stopped worker leaves no protection behind."""
        if self.protected:
            self._set(False, self.clock.monotonic())

    def _set(self, protected: bool, now: float) -> None:
        try:
            self.protector.set(protected)
        except FleetCallFailed as exc:
            if self.problem is None:
                log.warning(
                    "scale-in protection could not be set; trying again",
                    extra={"protection": self.protector.kind, "protected": protected, "error": str(exc)},
                )
            self.problem = str(exc)
            return
        renewal = self.protected and protected
        self.protected, self.problem = protected, None
        self._renew_at = now + self.protector.renew_s if protected and self.protector.renew_s else None
        set_scale_in_protected(protected)
        if not renewal:
            message = "scale-in protection on: busy" if protected else "scale-in protection off: idle"
            log.info(message, extra={"protection": self.protector.kind})

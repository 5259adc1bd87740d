"""The fleet watch: on a thread of its own, it reads the instance metadata every 5 s for a
Spot notice, a rebalance recommendation and (with a lifecycle hook) the target lifecycle
state; keeps the box protected from scale-in while busy; and keeps a pending lifecycle
action alive with heartbeats. The loop takes each new notice once (`notices`), and at exit,
once the last result is out, `leave` completes the lifecycle action. Metadata that cannot be
read is logged once (and again once it answers); it never stops the worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from common.clock import SYSTEM_CLOCK, Clock
from common.thread_health import GuardedThread
from fleet.autoscaling import AutoScaling, FleetCallFailed
from fleet.metadata import InstanceMetadata, MetadataUnavailable
from fleet.notices import Notice, read_notices
from monitoring.metrics import record_interruption, record_thread_failure
from pool.upkeep.scale_in import ScaleInProtection

log = logging.getLogger(__name__)
STEP_S = 1.0
NOTICE_POLL_S = 5.0  # as AWS advises for the Spot notice


@dataclass(frozen=True)
class FleetOptions:
    metadata: InstanceMetadata | None  # None: no instance metadata (off, or not on EC2)
    autoscaling: Callable[[], AutoScaling]  # calls about this instance
    notices: bool  # read Spot and rebalance notices
    lifecycle_hook: str | None  # read the lifecycle state, and complete this hook
    heartbeat_s: float
    protection: ScaleInProtection | None


class FleetWatch:
    def __init__(self, options: FleetOptions, busy: Callable[[], bool], clock: Clock = SYSTEM_CLOCK) -> None:
        self.options = options
        self.busy = busy
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, Notice] = {}
        self._new: list[Notice] = []
        self._metadata_problem: str | None = None
        self._next_poll = 0.0
        self._next_heartbeat: float | None = None
        self._thread = GuardedThread("fleet-watch", self._step, STEP_S, count_failure=record_thread_failure)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def next_due(self) -> float | None:
        return None  # the thread looks by itself; the loop only passes on whether it is busy

    def problem(self) -> str | None:
        return self._thread.problem()

    def tick(self) -> None:
        if self.options.protection is not None:
            self.options.protection.observe(self.busy())

    def notices(self) -> list[Notice]:
        """The notices seen since the last call, each once."""
        with self._lock:
            new, self._new = self._new, []
        return new

    def seen(self) -> list[Notice]:
        with self._lock:
            return list(self._seen.values())

    def leave(self) -> None:
        """At exit, after the last result went out: complete the lifecycle action, if one is
        pending, and lift scale-in protection."""
        hook = self.options.lifecycle_hook
        if hook is not None and "lifecycle" in self._seen:
            try:
                self.options.autoscaling().complete(hook)
                log.info("lifecycle action completed: CONTINUE", extra={"hook": hook})
            except (FleetCallFailed, MetadataUnavailable) as exc:
                log.error(
                    "could not complete the lifecycle action; the hook is left to time out",
                    extra={"hook": hook, "error": str(exc)},
                )
        if self.options.protection is not None:
            self.options.protection.release()

    def _step(self) -> None:
        now = self.clock.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + NOTICE_POLL_S
            self._poll()
        if self.options.protection is not None:
            self.options.protection.act()
        if self._next_heartbeat is not None and now >= self._next_heartbeat:
            self._next_heartbeat = now + self.options.heartbeat_s
            self._heartbeat()

    def _poll(self) -> None:
        metadata = self.options.metadata
        if metadata is None or not (self.options.notices or self.options.lifecycle_hook):
            return
        try:
            found = read_notices(metadata, spot=self.options.notices, lifecycle=self.options.lifecycle_hook is not None)
        except MetadataUnavailable as exc:
            if self._metadata_problem is None:
                log.warning("instance metadata unreadable; notices unknown until it answers", extra={"error": str(exc)})
            self._metadata_problem = str(exc)
            return
        if self._metadata_problem is not None:
            log.info("instance metadata answers again")
            self._metadata_problem = None
        for notice in found:
            self._noticed(notice)

    def _noticed(self, notice: Notice) -> None:
        with self._lock:
            if notice.source in self._seen:
                return
            self._seen[notice.source] = notice
            self._new.append(notice)
        record_interruption(notice.source)
        log.warning("instance notice", extra={"source": notice.source, "detail": notice.detail})
        if notice.source == "lifecycle":
            self._next_heartbeat = self.clock.monotonic() + self.options.heartbeat_s

    def _heartbeat(self) -> None:
        hook = self.options.lifecycle_hook
        if hook is None:
            return
        try:
            self.options.autoscaling().heartbeat(hook)
            log.info("lifecycle action heartbeat sent", extra={"hook": hook})
        except (FleetCallFailed, MetadataUnavailable) as exc:
            log.error("lifecycle heartbeat failed; trying again at the next", extra={"hook": hook, "error": str(exc)})

"""Cancel requests for running jobs: every --cancel-poll, one read (on a thread of its own)
looks up the ids of every job running here; the loop then asks the children running those
that were canceled to stop them (SIGTERM, the kill grace, SIGKILL). A job not yet started is
checked by its child before it runs. The watch also says when the job table cannot be reached,
from its own reads and the children's word."""

from __future__ import annotations

import logging
import threading

from common.clock import SYSTEM_CLOCK, Clock
from common.thread_health import GuardedThread
from monitoring.metrics import record_thread_failure
from pool.slots import SlotTable
from pool.wire import STOP_FOR_CANCEL, TableNote
from protocol.cancel import CancelMarks, CancelRequest, CancelUnavailable

log = logging.getLogger(__name__)


class CancelWatch:
    def __init__(
        self, marks: CancelMarks, poll_s: float, slots: SlotTable, table: str | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.clock = clock
        """`table`: the job table's name, if the marks are kept there."""
        self.marks = marks
        self.slots = slots
        self.poll_s = poll_s
        self.table = table
        self._lock = threading.Lock()
        self._asked: list[str] = []  # job ids to look up
        self._found: dict[str, CancelRequest] = {}
        self._unreachable: str | None = None
        self._due = self.clock.monotonic()
        self._thread = GuardedThread("cancel-watch", self._look_when_asked, count_failure=record_thread_failure)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def problem(self) -> str | None:
        with self._lock:
            unreachable = self._unreachable
        if unreachable is not None and self.table is not None:
            return f"the job table {self.table} is unreachable ({unreachable})"
        return self._thread.problem()

    def table_note(self, note: TableNote) -> None:
        """A child's word on the table."""
        with self._lock:
            self._unreachable = note.problem

    def next_due(self) -> float:
        return self._due

    def tick(self) -> None:
        """Stop the running jobs found canceled; once due, hand the running jobs' ids to the thread.
        The slots' notice boards are read only then: the loop calls this on every iteration."""
        with self._lock:
            found, self._found = self._found, {}
        now = self.clock.monotonic()
        due = now >= self._due
        if not found and not due:
            return
        running = {}
        for slot in self.slots.busy():
            accepted = self.slots.accepted(slot)
            if accepted is not None:
                running[accepted.job_id] = slot
        for job_id, cancel in found.items():
            holder = running.get(job_id)
            if holder is not None and not holder.shared.stop_request.value:
                fields = {"job_id": job_id, "slot": holder.index, "reason": cancel.reason, "by": cancel.requested_by}
                log.info("job canceled; stopping it", extra=fields)
                holder.shared.stop_request.value = STOP_FOR_CANCEL
        if not due:
            return
        self._due = now + self.poll_s
        if running:
            with self._lock:
                self._asked = list(running)
            self._thread.ask()

    def _look_when_asked(self) -> None:
        if not self._thread.wait_until_asked():
            return
        with self._lock:
            asked, self._asked = self._asked, []
        if not asked:
            return
        try:
            found = self.marks.requested(asked)
        except CancelUnavailable as exc:
            log.warning("cannot look up cancel requests now", extra={"error": str(exc)})
            with self._lock:
                self._unreachable = str(exc)
            return
        with self._lock:
            self._found.update(found)
            self._unreachable = None

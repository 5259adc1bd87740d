"""The image cache: the images this worker pulled are removed, least recently used first, when the
engine's disk is fuller than its high watermark (until it is down to the low one) or when they
take more than their cap. Never an image a job running or held here names, one matching
--keep-image, one used more recently than --image-min-idle, nor (unless the operator allows it)
one this worker did not pull. When the disk stays over its watermark after cleaning, pulls wait:
the children read that from the cache's state directory.

The loop hands the cache what it learns (pulls, jobs' images, the images held messages name);
the cleaning runs on a thread of its own, never on the loop.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from common.clock import SYSTEM_CLOCK, Clock
from common.thread_health import GuardedThread
from journal.base import ImageUse, JournalError
from monitoring.image_metrics import record_image_pull, record_image_removal, set_image_cache_bytes
from monitoring.metrics import record_thread_failure
from pool.holding.custody import Custody
from protocol.body import read_addressing
from protocol.result import JobResult, Status
from runners.image_policy import matches_any, qualified_name
from runners.process import RunnerFault
from runners.pulls import PullNote, set_disk_short

log = logging.getLogger(__name__)
DISK = "disk"  # removal reasons, as the metric labels them
CAP = "cap"


@dataclass(frozen=True)
class ImageCacheSettings:
    high: float = 0.85  # share of the engine's disk over which images are removed
    low: float = 0.80  # ...until this share
    max_bytes: int | None = None  # most the images this worker pulled may take together
    keep: tuple[str, ...] = ()  # globs of images never removed
    min_idle_s: float = 600.0  # an image used this recently stays
    remove_unpulled: bool = False  # images jobs used but this worker did not pull may go too
    check_every_s: float = 30.0


class ImageRecords(Protocol):
    """Where the cache keeps its record (the journal)."""

    def record_image_uses(self, uses: list[ImageUse]) -> None: ...

    def image_uses(self) -> list[ImageUse]: ...

    def forget_images(self, references: list[str]) -> None: ...


class Engine(Protocol):
    def disk_share(self) -> float | None: ...

    def size_of(self, reference: str) -> int | None: ...

    def remove(self, reference: str) -> str | None: ...


class CacheCleaner:
    """One cleaning pass, on the cache's thread."""

    def __init__(self, settings: ImageCacheSettings, records: ImageRecords, engine: Engine, state_dir: Path) -> None:
        self.settings = settings
        self.records = records
        self.engine = engine
        self.state_dir = state_dir

    def clean(self, protected: set[str], now: float) -> None:
        """`protected`: the images held or running jobs name, fully qualified."""
        uses = [use for use in self.records.image_uses() if use.pulled or self.settings.remove_unpulled]
        sizes = {use.reference: self.engine.size_of(use.reference) for use in uses}
        gone = [reference for reference, size in sizes.items() if size is None]
        self.records.forget_images(gone)
        pulled_bytes = sum(size for use in uses if use.pulled and (size := sizes[use.reference]))
        share = self.engine.disk_share()
        over_disk = share is not None and share > self.settings.high
        for use in sorted(uses, key=lambda use: use.last_used):
            disk_done = not over_disk or share is None or share <= self.settings.low
            cap_done = self.settings.max_bytes is None or pulled_bytes <= self.settings.max_bytes
            if disk_done and cap_done:
                break
            size = sizes[use.reference]
            if size is None or not self._removable(use, protected, now):
                continue
            refused = self.engine.remove(use.reference)
            if refused is not None:
                log.info("cannot remove an image; passing it by", extra={"image": use.reference, "error": refused})
                continue
            reason = CAP if disk_done else DISK
            self.records.forget_images([use.reference])
            pulled_bytes -= size if use.pulled else 0
            share = self.engine.disk_share()
            record_image_removal(reason)
            log.info(
                "removed an image",
                extra={
                    "image": use.reference,
                    "reason": reason,
                    "bytes": size,
                    "last_used": use.last_used,
                    "disk_share": share,
                    "cache_bytes": pulled_bytes,
                },
            )
        set_image_cache_bytes(pulled_bytes)
        set_disk_short(self.state_dir, self._short(share))

    def _removable(self, use: ImageUse, protected: set[str], now: float) -> bool:
        if qualified_name(use.reference) in protected or now - use.last_used < self.settings.min_idle_s:
            return False
        return not matches_any(use.reference, self.settings.keep)

    def _short(self, share: float | None) -> str | None:
        if share is None or share <= self.settings.high:
            return None
        return (
            f"the Docker engine's disk is {share:.0%} used, over --image-cache-high {self.settings.high:.0%}, "
            "with no image left that this worker may remove"
        )


class ImageCache:
    def __init__(self, cleaner: CacheCleaner, custody: Custody, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.cleaner = cleaner
        self.custody = custody
        self.settings = cleaner.settings
        self._lock = threading.Lock()
        self._uses: list[ImageUse] = []  # to record, handed from the loop to the thread
        self._protected: set[str] = set()
        self._due = self.clock.monotonic()
        self._thread = GuardedThread("image-cache", self._clean_when_asked, count_failure=record_thread_failure)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def problem(self) -> str | None:
        return self._thread.problem()

    def pulled(self, note: PullNote) -> None:
        """A child's pull: counted; a pulled image is this worker's, and the cache looks at once."""
        record_image_pull(note.seconds, note.failure)
        if note.failure is None:
            self._add(ImageUse(note.image, self.clock.time(), pulled=True))
            self._due = self.clock.monotonic()

    def job_ended(self, result: JobResult) -> None:
        """A docker job's image was used (unless the job was refused before it ran)."""
        if result.queue == "docker" and isinstance(result.service, str) and result.status != Status.REJECTED:
            self._add(ImageUse(result.service, self.clock.time(), pulled=False))

    def _add(self, use: ImageUse) -> None:
        with self._lock:
            self._uses.append(use)

    def next_due(self) -> float:
        return self._due

    def tick(self) -> None:
        """Once due: the images named by the messages held or running go to the thread, which
        then cleans."""
        if self.clock.monotonic() < self._due:
            return
        self._due = self.clock.monotonic() + self.settings.check_every_s
        protected = set()
        for kept in self.custody.kept_visible():
            found = read_addressing(kept.message.body)
            if found.queue == "docker" and isinstance(found.service, str):
                protected.add(qualified_name(found.service))
        with self._lock:
            self._protected = protected
        self._thread.ask()

    def _clean_when_asked(self) -> None:
        if not self._thread.wait_until_asked():
            return
        with self._lock:
            uses, self._uses = self._uses, []
            protected = set(self._protected)
        try:
            self.cleaner.records.record_image_uses(uses)
            self.cleaner.clean(protected, self.clock.time())
        except (JournalError, RunnerFault, OSError) as exc:
            with self._lock:
                self._uses[:0] = uses  # kept for the next pass
            log.warning("image cache: cannot clean now", extra={"error": str(exc)})

"""The image cache's choices, with the engine and the journal played by fakes: which images go,
in what order, and which never do."""

from __future__ import annotations

from pathlib import Path

import pytest

from journal.base import ImageUse
from journal.sqlite import SqliteJournal
from pool.upkeep.image_cache import CacheCleaner, ImageCache, ImageCacheSettings
from runners.process import RunnerFault
from runners.pulls import PullNote, disk_short_reason
from testkit.waiting import wait_until

MB = 1 << 20
NOW = 10_000.0


class FakeEngine:
    """A disk of 100 MB holding `used` MB besides the images."""

    def __init__(self, images: dict[str, int], used_mb: int = 0, refuse: tuple[str, ...] = ()) -> None:
        self.images = dict(images)  # reference -> size in bytes
        self.used_mb = used_mb
        self.refuse = refuse
        self.removed: list[str] = []

    def disk_share(self) -> float:
        return (self.used_mb * MB + sum(self.images.values())) / (100 * MB)

    def size_of(self, reference: str) -> int | None:
        return self.images.get(reference)

    def remove(self, reference: str) -> str | None:
        if reference in self.refuse:
            return "conflict: image is being used by a running container"
        self.images.pop(reference)
        self.removed.append(reference)
        return None


def cleaner(tmp_path: Path, engine: FakeEngine, uses: list[ImageUse], **settings: object) -> CacheCleaner:
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    journal.record_image_uses(uses)
    defaults: dict[str, object] = {"min_idle_s": 0.0}
    return CacheCleaner(ImageCacheSettings(**{**defaults, **settings}), journal, engine, tmp_path / "images")  # type: ignore[arg-type]


def test_over_the_high_watermark_the_least_recently_used_go_until_the_low_one(tmp_path: Path) -> None:
    engine = FakeEngine({f"img{n}:1": 10 * MB for n in range(5)}, used_mb=40)  # 90% used
    uses = [ImageUse(f"img{n}:1", NOW - 100 + n, pulled=True) for n in range(5)]
    cleaner(tmp_path, engine, uses, high=0.85, low=0.70).clean(set(), NOW)
    assert engine.removed == ["img0:1", "img1:1"]
    assert disk_short_reason(tmp_path / "images") is None


def test_never_a_held_kept_recent_or_unpulled_image(tmp_path: Path) -> None:
    images = ["held:1", "keep/x:1", "recent:1", "unpulled:1", "busy:1", "free:1"]
    engine = FakeEngine(dict.fromkeys(images, 10 * MB), used_mb=30)  # 90% used
    uses = [ImageUse(name, NOW - 1000 + n, pulled=name != "unpulled:1") for n, name in enumerate(images)]
    uses[2] = ImageUse("recent:1", NOW - 5, pulled=True)
    engine.refuse = ("busy:1",)  # another worker's container uses it
    clean = cleaner(tmp_path, engine, uses, high=0.5, low=0.4, keep=("*/keep/*",), min_idle_s=60.0)
    clean.clean({"docker.io/library/held:1"}, NOW)
    assert engine.removed == ["free:1"]
    # Still over: pulls wait, and the children are told why.
    reason = disk_short_reason(tmp_path / "images")
    assert reason is not None
    assert "80% used, over --image-cache-high 50%" in reason

    engine.used_mb = 0
    clean.clean(set(), NOW)
    assert disk_short_reason(tmp_path / "images") is None


def test_images_this_worker_did_not_pull_go_only_when_allowed(tmp_path: Path) -> None:
    engine = FakeEngine({"theirs:1": 10 * MB, "mine:1": 10 * MB}, used_mb=75)
    uses = [ImageUse("theirs:1", NOW - 100, pulled=False), ImageUse("mine:1", NOW - 50, pulled=True)]
    cleaner(tmp_path, engine, uses, high=0.9, low=0.86, remove_unpulled=True).clean(set(), NOW)
    assert engine.removed == ["theirs:1"]


def test_the_cap_counts_only_pulled_images_and_an_absent_image_is_forgotten(tmp_path: Path) -> None:
    engine = FakeEngine({"a:1": 10 * MB, "b:1": 10 * MB, "c:1": 10 * MB})
    uses = [ImageUse(name, NOW - 100 + n, pulled=True) for n, name in enumerate(["gone:1", "a:1", "b:1", "c:1"])]
    clean = cleaner(tmp_path, engine, uses, max_bytes=25 * MB)
    clean.clean(set(), NOW)
    assert engine.removed == ["a:1"]
    assert sorted(use.reference for use in clean.records.image_uses()) == ["b:1", "c:1"]


class UnreachableEngine(FakeEngine):
    def disk_share(self) -> float:
        if self.down:
            raise RunnerFault("Docker engine unreachable while asking where its data is: connection refused")
        return super().disk_share()

    down = True


class NothingHeld:
    def kept_visible(self) -> list[object]:
        return []


def test_an_unreachable_engine_costs_a_warning_and_keeps_what_the_cache_learnt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = UnreachableEngine({"a:1": MB, "b:1": MB})
    cache = ImageCache(cleaner(tmp_path, engine, []), NothingHeld())  # type: ignore[arg-type]
    cache.start()
    try:
        cache.pulled(PullNote("a:1", 1.5))
        cache.tick()
        wait_until(lambda: "image cache: cannot clean now" in caplog.text, 10, "the warning")
        assert cache.problem() is None
        engine.down = False
        cache.pulled(PullNote("b:1", 0.5))  # a pull makes the cache due at once
        cache.tick()
        wait_until(lambda: len(cache.cleaner.records.image_uses()) == 2 or None, 10, "both pulls recorded")
    finally:
        cache.stop()
    assert {(use.reference, use.pulled) for use in cache.cleaner.records.image_uses()} == {("a:1", True), ("b:1", True)}
    assert disk_short_reason(tmp_path / "images") is None

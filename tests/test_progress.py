"""The progress file: what a line means, and how the watcher reads a file the job controls."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pool.child import progress as progress_module
from pool.child.progress import TAIL_BYTES, Malformed, ProgressTicker, ProgressWatcher, parse_progress
from protocol.result import Progress
from testkit.waiting import wait_until


@pytest.mark.parametrize(
    ("line", "progress"),
    [
        (b"40", Progress(40.0, None)),
        (b"40% reading input\n", Progress(40.0, "reading input")),
        (b"  12.5   two spaces  ", Progress(12.5, "two spaces")),
        (b"reading input", Progress(None, "reading input")),
        (b"", None),
        (b"   \n", None),
    ],
)
def test_a_line_is_a_percentage_and_a_message_or_a_message(line: bytes, progress: Progress | None) -> None:
    assert parse_progress(line) == progress


@pytest.mark.parametrize("line", [b"150 too far", b"-1", b"nan", b"inf done", b"\xff\xfe"])
def test_a_line_that_cannot_be_read_is_malformed(line: bytes) -> None:
    with pytest.raises(Malformed):
        parse_progress(line)


@given(st.binary(max_size=2000))
def test_any_bytes_are_progress_nothing_or_malformed(line: bytes) -> None:
    try:
        progress = parse_progress(line)
    except Malformed:
        return
    if progress is not None:
        assert progress.percent is None or 0 <= progress.percent <= 100
        assert progress.message is None or len(progress.message) <= 1000


def _watched(path: Path) -> tuple[ProgressWatcher, list[Progress]]:
    emitted: list[Progress] = []
    return ProgressWatcher(path, 60.0, emitted.append), emitted


def _watched_through_a_job(path: Path) -> list[Progress]:
    """The progress events of a job that wrote `path` before the watcher's first look."""
    watcher, emitted = _watched(path)
    watcher.start()
    watcher.finish()
    return emitted


def test_only_the_last_line_counts_and_an_unfinished_one_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "progress"
    path.write_bytes(b"10 a\n20 b\n30 c")
    assert _watched_through_a_job(path) == [Progress(30.0, "c")]


def test_a_flood_is_read_by_its_tail(tmp_path: Path) -> None:
    path = tmp_path / "progress"
    path.write_bytes(b"".join(b"%d filler line\n" % (index % 100) for index in range(200_000)) + b"77 last\n")
    assert path.stat().st_size > 10 * TAIL_BYTES
    assert _watched_through_a_job(path) == [Progress(77.0, "last")]


def test_a_file_started_over_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "progress"
    path.write_bytes(b"10 first run, a long line\n")
    watcher, emitted = _watched(path)
    watcher._look(final=False)
    path.write_bytes(b"5 again\n")
    watcher._look(final=False)
    watcher.start()
    watcher.finish()
    assert emitted == [Progress(5.0, "again")]


def test_a_pipe_or_a_link_in_its_place_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("99 host file\n")
    link = tmp_path / "link"
    link.symlink_to(secret)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for path in (link, pipe):
        assert _watched_through_a_job(path) == []


def _announced_watcher(path: Path, ticker: ProgressTicker) -> tuple[ProgressWatcher, list[object]]:
    """A watcher whose announcement and progress land in one list, in the order they went out."""
    sent: list[object] = []
    watcher = ProgressWatcher(path, 0.0, sent.append, announce=lambda: sent.append("running"), ticker=ticker)
    return watcher, sent


def test_a_job_shorter_than_a_look_is_announced_at_its_end_before_its_progress(tmp_path: Path) -> None:
    path = tmp_path / "progress"
    path.write_bytes(b"40 quick\n")
    watcher, sent = _announced_watcher(path, ProgressTicker())
    watcher.start()
    assert sent == []  # nothing before the first look is due
    watcher.finish()
    assert sent == ["running", Progress(40.0, "quick")]


def test_a_running_job_is_announced_at_the_first_look_then_its_progress_follows(tmp_path: Path) -> None:
    path = tmp_path / "progress"
    watcher, sent = _announced_watcher(path, ProgressTicker())
    watcher.start()
    wait_until(lambda: sent == ["running"], 10, "the announcement while the job runs")
    path.write_bytes(b"70 later\n")
    wait_until(lambda: len(sent) == 2, 10, "the progress while the job runs")
    watcher.finish()
    assert sent == ["running", Progress(70.0, "later")]


def test_the_ticker_sleeps_between_jobs_and_wakes_for_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "IDLE_AFTER_S", 0.2)
    ticker = ProgressTicker()
    first, _ = _announced_watcher(tmp_path / "first", ticker)
    first.start()
    first.finish()
    wait_until(lambda: ticker._asleep, 10, "the ticker asleep with no job to watch")
    second, sent = _announced_watcher(tmp_path / "second", ticker)
    second.start()
    wait_until(lambda: sent == ["running"], 10, "the next job announced by a look")
    second.finish()
    assert sent == ["running"]

"""The progress file: what a line means, and how the watcher reads a file the job controls."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pool.progress import TAIL_BYTES, Malformed, ProgressWatcher, parse_progress
from protocol.result import Progress


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

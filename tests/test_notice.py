"""The child's notice of the job it holds, in shared memory."""

from __future__ import annotations

import multiprocessing

from pool.notice_board import NOTICE_BYTES, JobAccepted, new_notice_board, post, read


def test_a_notice_is_read_back_only_for_its_own_message() -> None:
    board = new_notice_board(multiprocessing.get_context("spawn"))
    assert read(board, "m1") is None
    post(board, JobAccepted("m1", "job-\u00e9", "svc", "replies"))
    assert read(board, "m1") == JobAccepted("m1", "job-\u00e9", "svc", "replies")
    assert read(board, "m2") is None  # a stale notice of an earlier job says nothing of this one
    post(board, JobAccepted("m2", "job-2", None, None))
    assert read(board, "m2") == JobAccepted("m2", "job-2", None, None)


def test_a_torn_or_garbled_notice_reads_as_none() -> None:
    board = new_notice_board(multiprocessing.get_context("spawn"))
    view = memoryview(board).cast("B")
    view[0:4] = (20).to_bytes(4, "little")
    view[4:24] = b"\xc1" * 20  # not msgpack
    assert read(board, "m") is None
    view[0:4] = (NOTICE_BYTES * 2).to_bytes(4, "little")
    assert read(board, "m") is None

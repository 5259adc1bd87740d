"""The embedded queue keeps SQS's semantics and loses nothing when a process is killed."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from queues import default_result_queue, open_queue
from queues.base import OutgoingMessage, VisibilityChange, Wakeups
from queues.local import LocalQueue
from queues.wakeup import wakeup_directory
from testkit.waiting import wait_until
from tests.support import REPO


@pytest.fixture
def queue(tmp_path: Path) -> LocalQueue:
    return LocalQueue(tmp_path / "q.sqlite3")


def test_receive_hides_messages_and_counts_receives(queue: LocalQueue) -> None:
    first = queue.send("one")
    queue.send("two")
    received = queue.receive(1, 0, visibility_timeout=60)
    assert [(m.message_id, m.body, m.receive_count) for m in received] == [(first, "one", 1)]
    assert [m.body for m in queue.receive(10, 0, visibility_timeout=60)] == ["two"]
    assert queue.receive(10, 0, visibility_timeout=60) == []


def test_released_message_comes_back_with_a_higher_receive_count(queue: LocalQueue) -> None:
    queue.send("job")
    (message,) = queue.receive(1, 0, visibility_timeout=60)
    queue.change_visibility([VisibilityChange(message.receipt, 0)])
    (again,) = queue.receive(1, 0, visibility_timeout=60)
    assert again.receive_count == 2
    assert again.receipt != message.receipt


def test_visibility_timeout_lapses(queue: LocalQueue) -> None:
    queue.send("job")
    queue.receive(1, 0, visibility_timeout=0.2)
    again = queue.receive(1, 5, visibility_timeout=60)
    assert [m.receive_count for m in again] == [2]


def test_delete_needs_the_latest_receipt(queue: LocalQueue) -> None:
    queue.send("job")
    (old,) = queue.receive(1, 0, visibility_timeout=0)
    (new,) = queue.receive(1, 0, visibility_timeout=60)
    queue.delete([old.receipt])
    assert queue.count() == 1
    queue.delete([new.receipt])
    assert queue.count() == 0


def test_named_queues_share_a_file_but_not_messages(queue: LocalQueue) -> None:
    queue.sibling("results").send("result")
    assert queue.receive(10, 0, 60) == []
    assert [m.body for m in queue.sibling("results").receive(10, 0, 60)] == ["result"]
    with pytest.raises(ValueError, match="must be 1-80 characters"):
        queue.sibling("../elsewhere")


def test_long_poll_returns_as_soon_as_a_message_arrives(queue: LocalQueue) -> None:
    sender = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import pathlib, queues.local as q; q.LocalQueue(pathlib.Path({str(queue.path)!r})).send('x')",
        ],
        cwd=REPO,
    )
    received = queue.receive(1, 20, visibility_timeout=60)
    sender.wait()
    assert [m.body for m in received] == ["x"]


def test_specs(tmp_path: Path) -> None:
    jobs = open_queue(f"local:{tmp_path}/q.sqlite3")
    assert jobs.spec == f"local:{tmp_path}/q.sqlite3"
    results = default_result_queue(jobs)
    assert results is not None and results.spec == f"local:{tmp_path}/q.sqlite3#results"
    with pytest.raises(ValueError, match="unsupported queue spec"):
        open_queue("redis://x")
    with pytest.raises(ValueError, match="names no file"):
        open_queue("local:")


def test_a_consumer_killed_with_sigkill_loses_nothing(queue: LocalQueue) -> None:
    for index in range(20):
        queue.send(f"job {index}")
    consumer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from queues.local import LocalQueue
                from pathlib import Path
                queue = LocalQueue(Path({str(queue.path)!r}))
                while True:
                    for message in queue.receive(3, 0, visibility_timeout=1):
                        print("received", message.body, flush=True)
                        queue.delete([message.receipt])
                        print("deleted", message.body, flush=True)
                    time.sleep(0.01)
                """
            ),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert consumer.stdout is not None
    lines = [consumer.stdout.readline().strip() for _ in range(10)]
    consumer.send_signal(signal.SIGKILL)
    consumer.wait()
    lines += consumer.stdout.read().split("\n")
    # The kill may fall between a delete and its "deleted" line: such a message is
    # neither shown deleted nor queued, but it was shown received.
    received = {line.removeprefix("received ") for line in lines if line.startswith("received ")}
    deleted = {line.removeprefix("deleted ") for line in lines if line.startswith("deleted ")}
    remaining: list[str] = wait_until(lambda: _drain(queue) if queue.count() else None, 10, "the remaining messages")
    assert received | set(remaining) == {f"job {index}" for index in range(20)}
    assert deleted and not deleted & set(remaining)


def _drain(queue: LocalQueue) -> list[str] | None:
    """Everything still queued once all in-flight messages have become visible again."""
    messages = queue.receive(20, 3, visibility_timeout=60)
    if len(messages) != queue.count():
        queue.change_visibility([VisibilityChange(m.receipt, 0) for m in messages])
        return None
    return [m.body for m in messages]


def _woken(listener: Wakeups) -> bool:
    readable, _, _ = select.select([listener.fileno()], [], [], 0)
    listener.drain()
    return bool(readable)


def test_a_listener_is_woken_by_sends_releases_and_group_deletes_on_its_queue_only(queue: LocalQueue) -> None:
    listener = queue.listen()
    assert listener is not None
    try:
        assert not _woken(listener)
        queue.sibling("results").send("another queue's message")
        assert not _woken(listener)
        queue.send("job")
        assert _woken(listener)
        assert not _woken(listener)  # drained
        (message,) = queue.receive(1, 0, visibility_timeout=60)
        queue.change_visibility([VisibilityChange(message.receipt, 30)])
        assert not _woken(listener)  # hidden longer: nothing new to receive
        queue.change_visibility([VisibilityChange(message.receipt, 0)])
        assert _woken(listener)
        (message,) = queue.receive(1, 0, visibility_timeout=60)
        queue.delete([message.receipt])
        assert not _woken(listener)  # nothing follows a message of no group
        queue.send_batch([OutgoingMessage("first", "g"), OutgoingMessage("second", "g")])
        assert _woken(listener)
        (first,) = queue.receive(10, 0, visibility_timeout=60)
        queue.delete([first.receipt])  # lets the group's next message out
        assert _woken(listener)
        (second,) = queue.receive(10, 0, visibility_timeout=60)
        assert queue.settle([], [second.receipt], [])
        assert _woken(listener)
    finally:
        listener.close()
    assert not list((wakeup_directory(queue.path) / "q-jobs").iterdir())


def test_a_sender_from_another_process_wakes_a_listener(queue: LocalQueue) -> None:
    listener = queue.listen()
    assert listener is not None
    try:
        sender = f"import pathlib, queues.local; queues.local.LocalQueue(pathlib.Path({str(queue.path)!r})).send('x')"
        subprocess.run([sys.executable, "-c", sender], cwd=REPO, check=True)
        assert _woken(listener)
    finally:
        listener.close()


def test_the_pipe_of_a_dead_listener_is_removed_and_strangers_are_left_alone(queue: LocalQueue) -> None:
    directory = wakeup_directory(queue.path) / "q-jobs"
    directory.mkdir(parents=True)
    os.mkfifo(directory / "dead")  # its listener died: nobody reads it
    (directory / "file").write_text("")  # not a pipe: never written to
    queue.send("job")
    assert sorted(path.name for path in directory.iterdir()) == ["file"]
    assert (directory / "file").read_text() == ""


def test_a_queue_whose_wakeups_cannot_be_made_is_polled(queue: LocalQueue, caplog: pytest.LogCaptureFixture) -> None:
    wakeup_directory(queue.path).write_text("in the way")
    assert queue.listen() is None
    assert "polling only" in caplog.text
    queue.send("job")  # the sender does not mind either
    assert [m.body for m in queue.receive(1, 0, visibility_timeout=60)] == ["job"]


def test_processes_opening_a_new_queue_file_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    """A worker and clients setting up one new file together: none fails with `database is locked`."""
    opener = (
        "import sys, time; from pathlib import Path; from queues.local import LocalQueue\n"
        "start = float(sys.argv[2])\n"
        "time.sleep(max(0.0, start - time.time()))\n"
        "LocalQueue(Path(sys.argv[1])).send('hello')\n"
    )
    for attempt in range(4):
        path = tmp_path / f"fresh-{attempt}.sqlite3"
        start = time.time() + 1.0  # every process is up and waiting by then
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", opener, str(path), str(start)], cwd=REPO, stderr=subprocess.PIPE, text=True
            )
            for _ in range(10)
        ]
        failures = [p.communicate(timeout=60)[1] for p in processes if p.wait(timeout=60) != 0]
        assert not failures, failures[0]
        assert LocalQueue(path).count() == 10

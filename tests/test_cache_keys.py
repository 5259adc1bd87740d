"""An input cache key's file: its lock, its record, and removal under the lock."""

from __future__ import annotations

import threading
from pathlib import Path

from staging.cache_keys import KeyFile, last_used_ns
from testkit.waiting import wait_until


def _blocked_on(inode: int) -> bool:
    """Whether a lock request waits on the file (the kernel lists waiters with "->")."""
    lines = Path("/proc/locks").read_text().splitlines()
    return any("->" in line and line.split()[6].endswith(f":{inode}") for line in lines)


def test_a_record_is_rewritten_in_place_and_a_torn_one_reads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "key"
    with KeyFile.lock(path) as key:
        assert key.record() is None  # a new key has no entry yet
        key.write({"size": 123456, "uri": "s3://b/a-long-key"})
        inode = path.stat().st_ino
        key.write({"size": 1})
        assert key.record() == {"size": 1}
        assert path.stat().st_ino == inode  # no new file
    path.write_text('{"size": 1}{"size"')  # a write cut short by a crash
    with KeyFile.lock(path) as key:
        assert key.record() is None
    path.write_text("[1, 2]")
    with KeyFile.lock(path) as key:
        assert key.record() is None


def test_a_held_key_is_not_taken_without_waiting(tmp_path: Path) -> None:
    path = tmp_path / "key"
    held = KeyFile.lock(path)
    assert KeyFile.lock(path, wait=False) is None
    held.close()
    again = KeyFile.lock(path, wait=False)
    assert again is not None
    again.close()


def test_a_waiter_for_a_key_removed_meanwhile_locks_the_file_made_after(tmp_path: Path) -> None:
    path = tmp_path / "key"
    holder = KeyFile.lock(path)
    got: list[KeyFile] = []
    waiter = threading.Thread(target=lambda: got.append(KeyFile.lock(path)))
    waiter.start()
    inode = path.stat().st_ino
    wait_until(lambda: _blocked_on(inode), 10, "the waiter to block on the key's lock")
    holder.remove()
    holder.close()
    waiter.join(10)
    assert len(got) == 1
    with got[0] as key:
        assert path.exists() and key.record() is None  # a new file at the path, and it is the locked one
        assert KeyFile.lock(path, wait=False) is None


def test_last_use_is_the_files_mtime_and_zero_without_one(tmp_path: Path) -> None:
    path = tmp_path / "key"
    assert last_used_ns(path) == 0
    with KeyFile.lock(path) as key:
        key.write({"size": 1})
    assert last_used_ns(path) == path.stat().st_mtime_ns > 0

"""The SQLite journal on its own: what it keeps, what it forgets, what it refuses to open."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from journal.base import ImageUse, JournalError, JournalUnusable, Outcome
from journal.health import JournalHealth
from journal.pruner import JournalPruner
from journal.sqlite import FORMAT_VERSION, SqliteJournal


def outcome(
    message_id: str | None = None, *, final: bool = True, job_id: str | None = None, **fields: object
) -> Outcome:
    message_id = message_id or str(uuid.uuid4())
    values: dict[str, object] = {
        "message_id": message_id,
        "job_id": job_id or message_id,
        "attempt": 1,
        "status": "succeeded" if final else "error",
        "final": final,
        "receipt": f"receipt-of-{message_id}",
        "result_json": '{"status": "succeeded"}',
        "retry_in_s": None if final else 10.0,
    }
    values.update(fields)
    return Outcome(**values)  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path) -> SqliteJournal:
    return SqliteJournal(tmp_path / "journal.sqlite3")


def test_an_outcome_is_kept_until_settled_then_only_its_tombstone(journal: SqliteJournal) -> None:
    done = outcome("m1", job_id="job-1", reply_to="replies", dead_letter_body="{bad")
    journal.record([done])
    assert journal.unsettled() == [done]
    assert journal.finished(["m1", "other"])["m1"].delivered is False
    journal.mark_sent([done.key])
    (left,) = journal.unsettled()
    assert (left.result_json, left.dead_letter_body, left.receipt) == ("", None, done.receipt)
    assert journal.finished(["m1"])["m1"].delivered is True
    journal.mark_settled([done.key])
    assert journal.unsettled() == []
    finished = journal.finished(["m1"])["m1"]
    assert (finished.job_id, finished.status, finished.delivered) == ("job-1", "succeeded", True)
    assert journal.finished_job("job-1") == finished
    assert journal.finished_job("m1") is None  # a job id of its own: found by that only


def test_a_job_without_an_id_of_its_own_is_found_by_its_message_id(journal: SqliteJournal) -> None:
    journal.record([outcome("m2")])
    assert journal.finished_job("m2") is not None


def test_a_retry_is_not_a_finished_job_and_leaves_nothing_once_settled(journal: SqliteJournal) -> None:
    retry = outcome("m3", final=False)
    journal.record([retry])
    assert journal.finished(["m3"]) == {}
    assert journal.unsettled() == [retry]
    journal.mark_settled([retry.key])
    assert journal.unsettled() == []
    rows = journal._db().execute("SELECT count(*) FROM outcomes").fetchone()[0]
    assert rows == 0


def test_pruning_forgets_settled_jobs_past_the_retention_only(journal: SqliteJournal) -> None:
    old = [outcome() for _ in range(5)]
    journal.record(old)
    journal.mark_settled([o.key for o in old[:4]])  # the fifth is still undelivered: kept
    cutoff = time.time() + 0.001
    time.sleep(0.01)
    young = outcome()
    journal.record([young])
    journal.mark_settled([young.key])
    assert journal.prune(cutoff, limit=1000) == 4
    assert set(journal.finished([o.message_id for o in [*old, young]])) == {old[4].message_id, young.message_id}
    pruner = JournalPruner(journal, retention_s=0.001, health=JournalHealth(journal.location))
    time.sleep(0.01)
    assert pruner.prune_once() == 1  # the young one, now past a retention of 1 ms
    assert [o.message_id for o in journal.unsettled()] == [old[4].message_id]


def test_a_finished_job_costs_under_300_bytes_once_delivered(journal: SqliteJournal) -> None:
    count = 5000
    big_result = '{"stdout": "' + "x" * 4000 + '"}'
    for _ in range(0, count, 4):
        batch = [outcome(result_json=big_result) for _job in range(4)]
        journal.record(batch)
        journal.mark_sent([o.key for o in batch])
        journal.mark_settled([o.key for o in batch])
    journal._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    per_job = journal.path.stat().st_size / count
    print(f"journal bytes per finished job: {per_job:.0f}")
    assert per_job < 300


def test_a_failed_write_raises_a_journal_error(journal: SqliteJournal) -> None:
    journal.record([outcome()])
    db = journal._db()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # as full as a full disk
    with pytest.raises(JournalError, match=r"recording outcomes in journal .* failed: database or disk is full"):
        journal.record([outcome(result_json="x" * 100_000)])


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    path.write_bytes(b"this is a text file, not a journal\n" * 100)
    with pytest.raises(JournalUnusable, match=f"journal {path} is not an SQLite database"):
        SqliteJournal(path)
    assert path.read_bytes().startswith(b"this is a text file")  # never rewritten


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE accounts (id INTEGER)")
    with pytest.raises(JournalUnusable, match=r"is an SQLite database of something else \(application id 0\)"):
        SqliteJournal(path)


def test_a_journal_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    SqliteJournal(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    with pytest.raises(
        JournalUnusable,
        match=rf"written by a newer api-worker \(journal format {FORMAT_VERSION + 1}; "
        rf"this one reads format {FORMAT_VERSION}\)",
    ):
        SqliteJournal(path)


def test_a_journal_of_the_first_format_is_upgraded_and_keeps_what_it_held(tmp_path: Path) -> None:
    """Format 1 had no message groups: its undelivered outcomes come back without one."""
    path = tmp_path / "journal.sqlite3"
    journal = SqliteJournal(path)
    journal.record([outcome(message_id="m1")])
    journal.close()
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE old AS SELECT seq, receipt, reply_to, result, dead_letter, retry_in_s FROM deliveries;"
            "DROP TABLE deliveries; ALTER TABLE old RENAME TO deliveries; DROP TABLE images;"
            "PRAGMA user_version = 1;"
        )

    journal = SqliteJournal(path)
    [kept] = journal.unsettled()
    assert (kept.message_id, kept.group_id) == ("m1", None)
    journal.record([outcome(message_id="m2", group_id="g")])
    assert [o.group_id for o in journal.unsettled()] == [None, "g"]
    journal.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION


def test_image_uses_keep_the_latest_use_and_whether_this_worker_ever_pulled_the_image(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    journal.record_image_uses([ImageUse("a:1", 100.0, True), ImageUse("b:1", 50.0, False)])
    journal.record_image_uses([ImageUse("a:1", 90.0, False), ImageUse("b:1", 70.0, False)])
    assert sorted(journal.image_uses(), key=lambda use: use.reference) == [
        ImageUse("a:1", 100.0, True),
        ImageUse("b:1", 70.0, False),
    ]
    journal.forget_images(["a:1"])
    assert [use.reference for use in journal.image_uses()] == ["b:1"]
    journal.close()


def test_a_journal_of_the_second_format_gets_the_image_table(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = SqliteJournal(path)
    journal.record([outcome(message_id="m1")])
    journal.close()
    with sqlite3.connect(path) as db:
        db.executescript("DROP TABLE images; PRAGMA user_version = 2;")

    journal = SqliteJournal(path)
    assert [o.message_id for o in journal.unsettled()] == ["m1"]
    journal.record_image_uses([ImageUse("a:1", 1.0, True)])
    assert journal.image_uses() == [ImageUse("a:1", 1.0, True)]
    journal.close()


def test_a_damaged_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = SqliteJournal(path)
    journal.record([outcome() for _ in range(200)])
    journal._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journal.close()
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[page_size * 2 : page_size * 4] = b"\xff" * (page_size * 2)  # two pages of garbage, the header intact
    path.write_bytes(bytes(data))
    with pytest.raises(JournalUnusable, match=f"journal {path} is corrupt"):
        SqliteJournal(path)


def test_a_journal_in_use_by_another_worker_is_refused(journal: SqliteJournal) -> None:
    with pytest.raises(JournalUnusable, match=r"is in use by another worker \(pid \d+\)"):
        SqliteJournal(journal.path)
    journal.close()
    SqliteJournal(journal.path).close()  # free again once the first one let go

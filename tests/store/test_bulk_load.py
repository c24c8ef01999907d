"""A large ``add`` into a small table builds the table's indexes after its rows.

What a user checks: the records are there, the indexes are the same ones
(same names, same SQL) and the queries use them; a batch that breaks a unique
index is refused whole; a process killed in the middle leaves the table, its
records and its indexes as they were; other connections go on as before.
"""

from __future__ import annotations

import signal
import sqlite3

import pytest

from koa_middleware import LocalCalibrationDB
from koa_middleware.database.bulk_load import BULK_ROWS, indexes_built_after
from koa_middleware.errors import InvalidRecordError
from support.bulk_records import many_records
from support.children import run_child

BATCH = BULK_ROWS + 500


def records(count: int, start: int = 0) -> list[dict]:
    return many_records(count, ["dark", "flat", "arc"], {"spectrograph": ["a", "b"]}, start)


def indexes(path) -> list[tuple[str, str]]:
    """The table's indexes as a reader sees them: name and SQL, in order of name."""
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'hispec' "
            "ORDER BY name"
        ).fetchall()


def count(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute('SELECT count(*) FROM "hispec"').fetchone()[0]


@pytest.fixture
def db_path(tmp_path):
    """A cache database whose table already has the columns of the records, and no rows."""
    path = tmp_path / "hispec.db"
    db = LocalCalibrationDB(path, "hispec")
    db.add(records(1))
    db.delete(records(1)[0]["id"])
    db.conn.execute('CREATE INDEX "ix_own_spectrograph" ON "hispec" ("spectrograph")')
    db.close()
    return path


def test_a_large_batch_is_stored_with_the_same_indexes(db_path):
    before = indexes(db_path)
    assert (
        "ix_own_spectrograph",
        'CREATE INDEX "ix_own_spectrograph" ON "hispec" ("spectrograph")',
    ) in before
    db = LocalCalibrationDB(db_path, "hispec")
    stored = db.add(records(BATCH))
    db.close()

    assert len(stored) == BATCH and count(db_path) == BATCH
    assert indexes(db_path) == before
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM hispec WHERE filename = 'cal_0000042.fits'"
        ).fetchall()
        assert any("ux_hispec_filename" in row[-1] for row in plan), plan
        found = conn.execute("SELECT id FROM hispec WHERE filename = 'cal_0000042.fits'")
        assert found.fetchall() == [(records(1, start=42)[0]["id"],)]


def test_the_indexes_are_dropped_only_for_a_large_batch_into_a_small_table(db_path):
    named = "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    with sqlite3.connect(db_path, isolation_level=None) as conn:
        (all_named,) = conn.execute(named).fetchone()
        for rows, expected in [(BULK_ROWS - 1, False), (BULK_ROWS, True)]:
            conn.execute("BEGIN IMMEDIATE")
            with indexes_built_after(conn, "hispec", rows) as dropped:
                assert dropped is expected
                assert conn.execute(named).fetchone()[0] == (0 if expected else all_named)
            conn.execute("ROLLBACK")
    db = LocalCalibrationDB(db_path, "hispec")
    db.add(records(BATCH))
    db.close()
    with sqlite3.connect(db_path, isolation_level=None) as conn:
        conn.execute("BEGIN IMMEDIATE")
        with indexes_built_after(conn, "hispec", BATCH - 1) as dropped:
            assert dropped is False  # the table holds more rows than the batch
        conn.execute("ROLLBACK")


def test_a_batch_that_repeats_a_file_name_is_refused_whole(db_path):
    before = indexes(db_path)
    batch = records(BATCH)
    batch[-1]["filename"] = batch[0]["filename"]
    db = LocalCalibrationDB(db_path, "hispec")
    with pytest.raises(InvalidRecordError, match="one calibration id only"):
        db.add(batch)
    db.close()
    assert count(db_path) == 0 and indexes(db_path) == before


def test_a_batch_that_takes_a_stored_file_name_is_refused_whole(db_path):
    db = LocalCalibrationDB(db_path, "hispec")
    [kept] = db.add(records(1, start=10 * BATCH))
    batch = records(BATCH)
    batch[5]["filename"] = kept["filename"]
    with pytest.raises(InvalidRecordError, match="one calibration id only"):
        db.add(batch)
    assert db.query_id(kept["id"])["filename"] == kept["filename"]
    db.close()
    assert count(db_path) == 1


def test_a_refused_batch_inside_a_longer_transaction_leaves_the_indexes(db_path):
    before = indexes(db_path)
    batch = records(BATCH)
    batch[-1]["filename"] = batch[0]["filename"]
    db = LocalCalibrationDB(db_path, "hispec")
    with db.write_transaction():
        with pytest.raises(InvalidRecordError):
            db.add(batch)
        db.add(records(3, start=5 * BATCH))  # the caller goes on, and commits
    db.close()
    assert count(db_path) == 3 and indexes(db_path) == before


def test_a_statement_still_reading_keeps_the_indexes_in_place(db_path):
    db = LocalCalibrationDB(db_path, "hispec")
    db.add(records(2, start=7 * BATCH))
    reading = db.conn.execute('SELECT id FROM "hispec"')
    assert reading.fetchone() is not None  # one row read, the statement still open
    before = indexes(db_path)
    db.add(records(BATCH))
    assert reading.fetchone() is not None
    db.close()
    assert count(db_path) == BATCH + 2 and indexes(db_path) == before


def test_another_connection_reads_through_the_bulk_add(db_path):
    other = sqlite3.connect(db_path)
    query = "SELECT count(*) FROM hispec WHERE cal_type = 'dark'"
    assert other.execute(query).fetchone() == (0,)
    db = LocalCalibrationDB(db_path, "hispec")
    db.add(records(BATCH))
    db.close()
    assert other.execute(query).fetchone() == ((BATCH + 2) // 3,)
    plan = other.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
    assert any("ix_hispec_cal_type" in row[-1] for row in plan), plan
    other.close()


@pytest.mark.parametrize("moment", ["dropped", "rows"])
def test_a_process_killed_in_a_bulk_add_leaves_the_table_as_it_was(db_path, moment):
    db = LocalCalibrationDB(db_path, "hispec")
    kept = db.add(records(5))
    db.close()
    before = indexes(db_path)

    result = run_child("die_in_bulk_add", db_path, moment, BATCH)
    assert result.returncode == -signal.SIGKILL, result.stderr

    assert indexes(db_path) == before
    assert count(db_path) == 5
    db = LocalCalibrationDB(db_path, "hispec")
    assert [db.query_id(rec["id"])["filename"] for rec in kept] == [rec["filename"] for rec in kept]
    db.add(records(BATCH, start=2 * BATCH))  # and the next bulk add goes through
    db.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert count(db_path) == BATCH + 5 and indexes(db_path) == before

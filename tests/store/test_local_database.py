"""LocalCalibrationDB: the surface selectors and pipelines use."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from koa_middleware import LocalCalibrationDB
from koa_middleware.errors import InvalidRecordError


def rec(i: int, **extra) -> dict:
    record = {
        "id": str(uuid.UUID(int=i + 1, version=4)),
        "filename": f"cal_{i}.fits",
        "cal_type": ("dark", "flat", "arc", "bias")[i % 4],
        "datetime_obs": f"2024-01-01T{i % 24:02d}:00:00.000",
        "origin": "KECK",
        "cal_version": "001",
        "last_updated": f"2025-01-01T00:00:{i % 60:02d}.000",
    }
    record.update(extra)
    return record


def test_file_database_uses_wal_and_indexes(db):
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexed = {
        row["name"]
        for row in db.custom_query("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    for column in ("cal_type", "datetime_obs", "last_updated", "origin", "filename"):
        assert any(column in name for name in indexed), column


def test_add_upserts_by_id_and_adds_new_columns(db):
    db.add([rec(i) for i in range(8)])
    assert len(db) == 8
    db.add(rec(3, spectrograph="spec_b", mjd_start=60310.5))
    assert len(db) == 8
    row = db.query_id(rec(3)["id"])
    assert row["spectrograph"] == "spec_b" and row["mjd_start"] == 60310.5
    assert "spectrograph" in db.columns


def test_add_returns_the_shape_it_was_given(db):
    one = db.add(rec(0, datetime_obs="2024-01-01 00:00"))
    assert isinstance(one, dict) and one["datetime_obs"] == "2024-01-01T00:00:00.000"
    many = db.add([rec(1), rec(2)])
    assert [r["filename"] for r in many] == ["cal_1.fits", "cal_2.fits"]
    assert db.add([]) == []


def test_records_without_last_updated_get_the_time_of_the_add(db):
    from koa_middleware.timestamps import utc_now

    given = rec(0)
    before = utc_now()
    undated = [rec(1, last_updated=None), rec(2)]
    del undated[1]["last_updated"]
    stored = db.add([given, *undated])
    after = utc_now()
    stamps = {r["last_updated"] for r in stored[1:]}
    assert len(stamps) == 1  # one time for the whole batch
    (stamp,) = stamps
    assert before <= stamp <= after
    assert stored[0]["last_updated"] == given["last_updated"]  # a given time is kept
    assert db.get_last_updated() == stamp
    found = db.query(last_updated_start=stamp)
    assert sorted(r["id"] for r in found) == sorted(r["id"] for r in undated)


def test_rows_keep_the_order_they_were_added_in(db):
    # ids deliberately in descending order: a store that sorts by id would reverse them
    records = [rec(100 - i, filename=f"tie_{i}.fits", mjd_start=60000.0) for i in range(30)]
    db.add(records[:10])
    for record in records[10:20]:
        db.add(record)
    db.add(records[20:])
    wanted = [r["filename"] for r in records]
    assert db.get_column(column="filename") == wanted
    assert [r["filename"] for r in db.rows] == wanted
    params = {"mjd": 60000.0}
    ordered = db.rows_where("mjd_start > 0", params, order_by="ABS(mjd_start - :mjd)")
    assert [r["filename"] for r in ordered] == wanted
    first = db.table.rows_where("mjd_start > 0", params, order_by="ABS(mjd_start - :mjd)", limit=3)
    assert [r["filename"] for r in first] == wanted[:3]
    assert [r["filename"] for r in db.query(order_by="mjd_start")] == wanted


def test_transaction_commits_together_or_not_at_all(db):
    with db.transaction():
        db.add(rec(1))
        db.add(rec(2))
    assert len(db) == 2
    with pytest.raises(InvalidRecordError):
        with db.transaction():
            db.add(rec(3))
            db.add(rec(4, filename="cal_1.fits"))  # a second id for one file name
    assert db.get_column(column="filename") == ["cal_1.fits", "cal_2.fits"]


def test_add_with_alter_false_refuses_new_columns(db):
    with pytest.raises(InvalidRecordError, match="alter=True"):
        db.add(rec(1, brand_new=5), alter=False)
    assert len(db) == 0


def test_query_filters_and_fetch_first(db):
    db.add([rec(i) for i in range(20)])
    darks = db.query(cal_type="dark")
    assert [r["cal_type"] for r in darks] == ["dark"] * 5
    assert darks == sorted(darks, key=lambda r: r["last_updated"])
    assert db.query(cal_id=rec(7)["id"])["filename"] == "cal_7.fits"
    # as in the reference, an id or a file name names one record: other filters are ignored
    assert db.query(cal_id=rec(7)["id"], cal_type="dark")["filename"] == "cal_7.fits"
    assert db.query(filename="cal_9.fits")["id"] == rec(9)["id"]
    assert db.query(filename="cal_9.fits", fetch="first")["id"] == rec(9)["id"]
    assert db.query(filename="absent.fits") is None
    window = db.query(date_time_start="2024-01-01T03:00:00", date_time_end="2024-01-01T05:00:00")
    assert sorted(r["filename"] for r in window) == ["cal_3.fits", "cal_4.fits", "cal_5.fits"]
    newer = db.query(last_updated_start="2025-01-01T00:00:17.000")  # inclusive, as the reference
    assert sorted(r["filename"] for r in newer) == ["cal_17.fits", "cal_18.fits", "cal_19.fits"]
    older = db.query(last_updated_end="2025-01-01T00:00:01.000")
    assert sorted(r["filename"] for r in older) == ["cal_0.fits", "cal_1.fits"]
    assert db.query(origin="keck", cal_type="arc", fetch="first")["cal_type"] == "arc"
    with pytest.raises(InvalidRecordError, match="no_such_column.*columns are .*cal_type"):
        db.query(no_such_column=1)
    assert db.query(cal_type="nothing", fetch="first") is None


def test_versions_bounds(db):
    db.add([rec(i, cal_version=f"{i + 1:03d}") for i in range(5)])
    got = db.query(cal_version_min="002", cal_version_max=4, order_by="cal_version")
    assert [r["cal_version"] for r in got] == ["002", "003", "004"]


def test_order_by_is_validated(db):
    with pytest.raises(InvalidRecordError):
        db.query(order_by="last_updated; DROP TABLE hispec")
    db.add(rec(1))
    assert len(db) == 1


def test_rows_where_for_selectors(db):
    db.add([rec(i, mjd_start=60000 + i) for i in range(12)])
    best = list(
        db.table.rows_where(
            "cal_type = :t",
            {"t": "dark", "mjd": 60007.9},
            order_by="ABS(mjd_start - :mjd)",
            limit=1,
        )
    )
    assert best[0]["filename"] == "cal_8.fits"
    assert len(list(db.rows_where("cal_type = ?", ["flat"]))) == 3


def test_get_last_updated_column_delete_and_reset(db):
    assert db.get_last_updated() is None
    db.add([rec(i) for i in range(5)])
    assert db.get_last_updated() == "2025-01-01T00:00:04.000"
    assert db.get_column("filename") == [f"cal_{i}.fits" for i in range(5)]
    assert db.delete(rec(0)["id"]) is True
    assert db.delete(rec(0)["id"]) is False
    with pytest.raises(ValueError, match="confirm=True"):
        db._reset()
    assert len(db) == 4
    db._reset(confirm=True)
    assert len(db) == 0


def test_batch_with_one_bad_record_changes_nothing(db):
    db.add(rec(0))
    with pytest.raises(InvalidRecordError):
        db.add([rec(1), rec(2, filename="../escape.fits")])
    assert db.get_column("filename") == ["cal_0.fits"]


def test_two_ids_cannot_share_a_file_name(db):
    db.add(rec(0))
    with pytest.raises(InvalidRecordError, match="file name"):
        db.add(rec(1, filename="cal_0.fits"))
    assert len(db) == 1


def test_meta_values_and_close_twice(db):
    db.set_meta("cursor", 42)
    assert db.get_meta("cursor") == "42"
    db.set_meta("cursor", None)
    assert db.get_meta("cursor") is None
    db.close()
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        db.query()


def test_custom_query_binds_values(db):
    db.add([rec(i) for i in range(4)])
    rows = db.custom_query("SELECT filename FROM hispec WHERE cal_type = ?", ["flat"])
    assert rows == [{"filename": "cal_1.fits"}]


def test_in_memory_database():
    db = LocalCalibrationDB(":memory:", "liger")
    db.add(rec(1))
    assert db.query_filename("cal_1.fits")["id"] == rec(1)["id"]


def test_columns_that_differ_only_by_case_are_one_column(db):
    db.add(rec(1, EXPTIME=30.0))
    db.add([rec(2, exptime=60.0), rec(3, Exptime=90.0)])
    assert [c for c in db.columns if c.lower() == "exptime"] == ["EXPTIME"]
    assert db.get_column("EXPTIME") == [30.0, 60.0, 90.0]


def test_more_columns_than_sqlite_allows_is_refused_and_changes_nothing(db):
    db.add(rec(1))
    before = db.columns
    wide = rec(2, **{f"col_{i}": i for i in range(2100)})
    with pytest.raises(InvalidRecordError, match="Could not add column"):
        db.add(wide)
    assert db.columns == before and len(db) == 1


def test_change_mark_follows_rows_added_and_deleted_not_records_changed_in_place(db):
    empty = db.change_mark()
    db.add([rec(i) for i in range(3)])
    added = db.change_mark()
    assert added != empty
    db.add(rec(1, cal_version="002"))  # the same id, changed in place
    assert db.change_mark() == added
    db.set_published({rec(0)["id"]: "2025-01-01T00:00:00.000"})
    published = db.change_mark()
    assert published != added
    # A deletion through another connection is seen too, though it leaves as many rows
    # as an addition would have.
    with sqlite3.connect(db.db_path) as other:
        other.execute('DELETE FROM "hispec" WHERE id = ?', (rec(2)["id"],))
    deleted = db.change_mark()
    assert deleted != published
    db.add(rec(2))
    assert db.change_mark() not in (published, deleted)
    assert len(db) == 3 and bool(db)


def test_an_empty_database_is_false_and_one_with_records_true(db):
    assert not db
    db.add(rec(0))
    assert db
    db.delete(rec(0)["id"])
    assert not db

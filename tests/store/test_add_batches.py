"""A bulk ``add`` stores and returns what adding the records one by one would.

The batch checks read whole columns at once (joined text, counts, slices), so
the odd values here sit where those checks could be fooled: next to each
other, at the edges of a column, in runs of different fields.
"""

from __future__ import annotations

import math
import sqlite3

import pytest

from koa_middleware import LocalCalibrationDB
from koa_middleware.errors import InvalidRecordError
from koa_middleware.record_batches import validate_records
from koa_middleware.records import LOCAL_REQUIRED_FIELDS, validate_record


def record(index: int, **fields) -> dict:
    rec = {
        "id": f"1b4e28ba-2fa1-4d2b-883f-{index:012d}",
        "filename": f"hispec_dark_{index:04d}.fits",
        "cal_type": "dark",
        "datetime_obs": f"2024-01-01T{index % 24:02d}:00:00.000",
        "origin": "KECK",
        "cal_version": "001",
        "last_updated": "2024-02-01T00:00:00.000",
        "file_md5": "0123456789abcdef0123456789abcdef",
        "file_size": 1024,
        "master_cal": 1,
        "mjd_start": 60310.5 + index,
    }
    rec.update(fields)
    return rec


def outcome(call):
    """What ``call()`` returns, or the type and message of what it raises."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return type(exc), str(exc)


def one_by_one(records):
    return outcome(lambda: [validate_record(rec, LOCAL_REQUIRED_FIELDS) for rec in records])


def stored_rows(db: LocalCalibrationDB) -> list[dict]:
    return [dict(row) for row in db.custom_query(f'SELECT * FROM "{db.table_name}" ORDER BY rowid')]


# Values that the column checks read together: two neighbours whose lengths make
# up for each other, separators out of place, non-ASCII digits and look-alikes.
NEIGHBOURS = [
    ("id", "1b4e28ba-2fa1-4d2b-883f-0016d3cca42", "1b4e28ba-2fa1-4d2b-883f-0016d3cca4277"),
    ("id", "1b4e28ba-2fa1-4d2b-883f-0016d3cca427\n", "1b4e28ba-2fa1-4d2b-883f-0016d3cca428"),
    ("id", "1b4e28ba2-fa1-4d2b-883f-0016d3cca427", "1b4e28ba-2fa1-4d2b-883f-0016d3cca428"),
    ("id", "1B4E28BA-2FA1-4D2B-883F-0016D3CCA427", "1b4e28ba-2fa1-4d2b-883f-0016d3cca428"),
    ("id", "1b4e28ba-2fa1-4d2b-883f-0016d3cca4g7", "1b4e28ba-2fa1-4d2b-883f-0016d3cca428"),
    ("id", "1b4e28ba-2fa1-4d2b-883f-0016d3cca42é", "1b4e28ba-2fa1-4d2b-883f-0016d3cca428"),
    ("id", "-" * 36, "1b4e28ba-2fa1-4d2b-883f-0016d3cca428"),
    # joined, these two read as two good ids
    ("id", "1b4e28ba-2fa1-4d2b-883f-0016d3c", "ca4271b4e28ba-2fa1-4d2b-883f-0016d3cca428"),
    ("datetime_obs", "2024-01-01T00:00:00.00", "02024-01-01T00:00:00.000"),
    ("datetime_obs", "2024-01-01T00:00:00.000\n", "2024-01-01T00:00:00.000"),
    ("datetime_obs", "2024-01-01 00:00:00.000", "2024-01-01T00:00:00.000"),
    ("datetime_obs", "2024-02-30T00:00:00.000", "2024-01-01T00:00:00.000"),
    ("datetime_obs", "2024:01-01T00:00:00.000", "2024-01-01T00:00:00.000"),
    ("datetime_obs", "２０２４-01-01T00:00:00.000", "2024-01-01T00:00:00.000"),
    ("datetime_obs", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000"),
    ("last_updated", "", "2024-01-01T00:00:00.000"),
    ("filename", "a", "."),
    ("filename", "ab", ".."),
    ("filename", "", "x.fits"),
    ("filename", "a\x7fb.fits", "x.fits"),
    ("filename", "a\nb.fits", "x.fits"),
    ("filename", "\u202efits.exe", "x.fits"),
    ("filename", "é.fits", "x.fits"),
    ("filename", "x" * 255, "y" * 256),
    ("filename", "a/b.fits", "x.fits"),
    ("file_md5", "0123456789abcdef0123456789abcde", "0123456789abcdef0123456789abcdeff"),
    ("file_md5", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcdef"),
    ("file_md5", "0123456789abcdef0123456789abcdeg", "0123456789abcdef0123456789abcdef"),
    ("origin", " keck", "Keck"),
    ("origin", "KECK", " "),
    ("cal_version", "7", "001"),
    ("cal_version", "000", "001"),
    ("mjd_start", 1e308, 1e308),
    ("mjd_start", math.inf, -math.inf),
    ("mjd_start", math.nan, 1.0),
    ("mjd_start", True, 1.0),
    ("master_cal", "yes", 0),
    ("file_size", 2**63, 0),
]


@pytest.mark.parametrize("field,first,second", NEIGHBOURS, ids=lambda v: repr(v)[:30])
def test_odd_neighbours_in_a_batch_give_what_one_by_one_gives(field, first, second):
    records = [record(i) for i in range(6)]
    records[2][field] = first
    records[3][field] = second
    expected = one_by_one(records)
    got = outcome(lambda: validate_records(records))
    assert got == expected
    if isinstance(expected, list):
        assert [[type(v) for v in rec.values()] for rec in got] == [
            [type(v) for v in rec.values()] for rec in expected
        ]


@pytest.mark.parametrize("field,first,second", NEIGHBOURS, ids=lambda v: repr(v)[:30])
def test_add_of_odd_neighbours_stores_what_one_by_one_stores_or_nothing(
    tmp_path, field, first, second
):
    records = [record(i) for i in range(6)]
    records[2][field] = first
    records[3][field] = second
    expected = one_by_one(records)
    db = LocalCalibrationDB(tmp_path / "batch.db", "hispec")
    got = outcome(lambda: db.add(records))
    if isinstance(expected, list):
        assert got == expected
        assert stored_rows(db) == [{**dict.fromkeys(stored_rows(db)[0]), **rec} for rec in expected]
    else:
        assert got == expected  # the same error, word for word
        assert stored_rows(db) == []
    db.close()


def test_add_of_runs_of_different_fields_stores_each_as_given(db):
    records = [
        record(0),
        record(1),
        dict(reversed(record(2).items())),  # the same fields in another order
        {**record(3), "exptime": 30.0},
        {**record(4), "exptime": 60.0, "spectrograph": "spec_b"},
        record(5, id="1B4E28BA-2FA1-4D2B-883F-000000000005"),  # needs normalizing
        {key: value for key, value in record(6).items() if key != "mjd_start"},
    ]
    stored = db.add(records)
    assert stored == [validate_record(rec) for rec in records]
    assert [list(rec) for rec in stored] == [list(rec) for rec in records]
    rows = stored_rows(db)
    assert [row["id"] for row in rows] == [rec["id"] for rec in stored]
    for row, rec in zip(rows, stored, strict=True):
        assert {key: row[key] for key in rec} == rec
        assert all(row[key] is None for key in row if key not in rec)


def test_add_normalizes_copies_and_leaves_the_given_records_alone(db):
    given = [
        record(0, origin=" keck ", cal_version=7, master_cal="yes"),
        record(1, file_md5="0123456789ABCDEF0123456789ABCDEF", datetime_obs="2024-01-01"),
        record(2, id="1B4E28BA-2FA1-4D2B-883F-000000000002", mjd_start=7),
    ]
    before = [dict(rec) for rec in given]
    stored = db.add(given)
    assert given == before
    assert all(rec is not original for rec, original in zip(stored, given, strict=True))
    assert [rec["origin"] for rec in stored] == ["KECK"] * 3
    assert stored[0]["cal_version"] == "007" and stored[0]["master_cal"] == 1
    assert stored[1]["file_md5"] == "0123456789abcdef0123456789abcdef"
    assert stored[1]["datetime_obs"] == "2024-01-01T00:00:00.000"
    assert stored[2]["id"] == "1b4e28ba-2fa1-4d2b-883f-000000000002"
    assert stored_rows(db)[2]["id"] == "1b4e28ba-2fa1-4d2b-883f-000000000002"


def test_a_bad_value_late_in_a_large_batch_is_refused_with_its_message_and_nothing_stored(db):
    records = [record(i) for i in range(2000)]
    records[1500]["filename"] = "../outside.fits"
    with pytest.raises(InvalidRecordError) as caught:
        db.add(records)
    with pytest.raises(InvalidRecordError) as alone:
        validate_record(records[1500])
    assert str(caught.value) == str(alone.value)
    assert len(db) == 0


def test_a_batch_with_some_records_undated_stamps_only_those_with_one_time(db):
    records = [record(i) for i in range(4)]
    records[1]["last_updated"] = None
    records[3]["last_updated"] = None
    stored = db.add(records)
    assert stored[0]["last_updated"] == stored[2]["last_updated"] == "2024-02-01T00:00:00.000"
    assert stored[1]["last_updated"] == stored[3]["last_updated"] != "2024-02-01T00:00:00.000"
    assert [row["last_updated"] for row in stored_rows(db)] == [
        rec["last_updated"] for rec in stored
    ]


def test_an_index_already_there_is_found_without_the_write_lock(tmp_path):
    path = tmp_path / "locked.db"
    db = LocalCalibrationDB(path, "hispec", timeout=0.2)
    db.add([record(0)])
    db.ensure_index(["cal_type", "mjd_start"])
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process writing for a long time
    try:
        db.ensure_index(["cal_type", "mjd_start"])  # there: no wait, no "database is locked"
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            db.ensure_index(["cal_type", "datetime_obs", "mjd_start"])  # missing: it must write
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    db.ensure_index(["cal_type", "datetime_obs", "mjd_start"])
    indexes = {row[0] for row in db.conn.execute("SELECT name FROM sqlite_master")}
    assert "ix_hispec_cal_type_datetime_obs_mjd_start" in indexes
    db.close()


LIFECYCLE_CASES = {
    "canonical": [
        {"published_at": "2024-03-01T00:00:00.000", "retracted_at": None, "retract_reason": None},
        {"published_at": "2024-03-01T00:00:01.500", "retracted_at": "2024-04-01T00:00:00.000"},
    ],
    "to normalize": [
        {"published_at": "2024-03-01T00:00:00.000"},
        {"published_at": "2024-03-01"},
    ],
    "not a real time": [
        {"published_at": "2024-03-01T00:00:00.000"},
        {"published_at": "2024-13-01T00:00:00.000"},
    ],
    "reason too long": [
        {"retracted_at": "2024-04-01T00:00:00.000", "retract_reason": "x" * 2001},
        {"retracted_at": "2024-04-01T00:00:00.000", "retract_reason": "bad"},
    ],
}


@pytest.mark.parametrize("case", list(LIFECYCLE_CASES))
def test_lifecycle_split_by_column_matches_record_by_record(case):
    """The lifecycle split of a run checked by column gives what each record's split gives."""
    from koa_middleware.record_batches import split_run_lifecycle, validate_runs
    from koa_middleware.records import split_lifecycle

    # Every record has the three fields, so the records make one run.
    blank = dict.fromkeys(("published_at", "retracted_at", "retract_reason"))
    records = [record(i, **{**blank, **LIFECYCLE_CASES[case][i % 2]}) for i in range(6)]

    def by_column():
        lifecycle: dict = {}
        runs = [split_run_lifecycle(run, lifecycle) for run in validate_runs(records)]
        return [rec for run in runs for rec in run.records], lifecycle

    def by_record():
        lifecycle: dict = {}
        rests = []
        for rec in (validate_record(r, LOCAL_REQUIRED_FIELDS) for r in records):
            rest, info = split_lifecycle(rec)
            lifecycle[rest["id"]] = info
            rests.append(rest)
        return rests, lifecycle

    assert outcome(by_column) == outcome(by_record)
    if case == "canonical":
        runs = validate_runs(records)
        assert all(run.columns is not None for run in runs)  # the column path was taken

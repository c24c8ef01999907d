"""Nearest-value queries through the index give the same answers as plain SQLite."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from koa_middleware import LocalCalibrationDB

WHERE = "cal_type = :cal_type AND spectrograph = :spec AND master_cal = 1"


def make_db(values):
    db = LocalCalibrationDB(":memory:", "hispec")
    db.add(
        [
            {
                "id": str(uuid.UUID(int=i + 1, version=4)),
                "filename": f"c{i}.fits",
                "cal_type": ("dark", "flat")[i % 2],
                "datetime_obs": "2024-01-01T00:00:00",
                "spectrograph": ("spec_a", "spec_b")[(i // 2) % 2],
                "master_cal": 1,
                "mjd_start": value,
            }
            for i, value in enumerate(values)
        ]
    )
    return db


def plain_sqlite(db, params, order_by, limit):
    sql = f"SELECT * FROM hispec WHERE {WHERE} ORDER BY {order_by} LIMIT {limit}"
    return db.custom_query(sql, params)


mjds = st.floats(min_value=59000, max_value=61000, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.one_of(mjds, st.integers(59000, 61000)), min_size=1, max_size=40),
    null_at=st.one_of(st.none(), st.integers(0, 40)),
    target=st.one_of(mjds, st.integers(59000, 61000)),
    limit=st.integers(1, 5),
    reversed_form=st.booleans(),
    spec=st.sampled_from(["spec_a", "spec_b"]),
)
def test_nearest_matches_plain_sqlite(values, null_at, target, limit, reversed_form, spec):
    if null_at is not None:
        values.insert(null_at, None)  # a row without a value: SQLite sorts it first
    db = make_db(values)
    order_by = "ABS(:mjd - mjd_start)" if reversed_form else "ABS(mjd_start - :mjd)"
    params = {"cal_type": "dark", "spec": spec, "mjd": target}
    got = list(db.table.rows_where(WHERE, params, order_by=order_by, limit=limit))
    want = plain_sqlite(db, params, order_by, limit)

    def distance(row):
        return None if row["mjd_start"] is None else abs(row["mjd_start"] - target)

    assert [distance(r) for r in got] == [distance(r) for r in want]
    assert all(set(r) == set(want[0]) for r in got)


def test_nearest_query_uses_an_index_it_created():
    db = make_db([60000 + i for i in range(50)])
    params = {"cal_type": "dark", "spec": "spec_a", "mjd": 60020.2}
    (row,) = db.table.rows_where(WHERE, params, order_by="ABS(mjd_start - :mjd)", limit=1)
    assert row["mjd_start"] == 60020
    indexes = {r["name"] for r in db.custom_query("SELECT name FROM sqlite_master")}
    assert any("mjd_start" in name and "spectrograph" in name for name in indexes)
    plan = db.custom_query(
        f"EXPLAIN QUERY PLAN SELECT * FROM hispec WHERE {WHERE} AND mjd_start < :mjd "
        "ORDER BY mjd_start DESC LIMIT 1",
        params,
    )
    assert "USE TEMP B-TREE" not in str(plan)


def test_other_orderings_go_to_sqlite_unchanged():
    db = make_db([60000 + i for i in range(10)])
    rows = list(
        db.table.rows_where(
            WHERE, {"cal_type": "dark", "spec": "spec_a"}, order_by="mjd_start DESC", limit=2
        )
    )
    assert [r["mjd_start"] for r in rows] == [60008, 60004]
    rows = list(
        db.table.rows_where("cal_type = ?", ["flat"], order_by="ABS(mjd_start - 5)", limit=1)
    )
    assert rows[0]["cal_type"] == "flat"

"""What ``koa-cal status`` says of a cache's files: which records have none, and the bytes held.

The census lists each folder once and reads the records' names and sizes from
the database; these tests hold its answers against the folder itself (every
file measured on disk) in the cases where the two could part: strays, records
without a size, files a read-only cache holds, and many files missing or few.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.cache.report import cache_status, folder_size
from koa_middleware.errors import InvalidRecordError
from support.models import FileModel, dark


def register(store, count: int, start: int = 0, **extra) -> list[dict]:
    return [
        store.register_calibration(FileModel(dark(i, **extra), os.urandom(1000 + i)))[1]
        for i in range(start, start + count)
    ]


def test_sizes_and_missing_files_agree_with_the_folder(store):
    records = register(store, 6)
    folder = store.layout.calibrations_dir
    (folder / records[1]["filename"]).unlink()
    (folder / "dark_99999.fits.part").write_bytes(b"p" * 777)  # a download cut short
    (folder / "stray_dir").mkdir()
    (folder / "stray_dir" / "inside.bin").write_bytes(b"q" * 55)
    status = cache_status(store.cache)
    assert status["cache_bytes"]["calibrations"] == folder_size(folder)
    assert [m["id"] for m in status["missing_files"]] == [records[1]["id"]]
    assert status["files_not_downloaded"] == 1
    assert store.get_missing_local_files() == [store.local_db.query_id(records[1]["id"])]


def test_a_record_without_a_size_is_measured_on_disk(store):
    records = register(store, 3)
    store.local_db.conn.execute(
        'UPDATE "hispec" SET file_size = NULL WHERE id = ?', (records[0]["id"],)
    )
    store.local_db.conn.commit()
    status = cache_status(store.cache)
    assert status["cache_bytes"]["calibrations"] == folder_size(store.layout.calibrations_dir)


@pytest.mark.parametrize("removed", [1, 9])  # few files gone, or most
def test_missing_files_come_whole_in_the_order_they_were_added(store, removed):
    records = register(store, 10)
    gone = records[-removed:] if removed > 1 else [records[4]]
    for record in gone:
        (store.layout.calibrations_dir / record["filename"]).unlink()
    missing = store.get_missing_local_files()
    assert missing == [store.local_db.query_id(r["id"]) for r in gone]
    status = cache_status(store.cache)
    assert status["cache_bytes"]["calibrations"] == folder_size(store.layout.calibrations_dir)
    assert status["files_not_downloaded"] == removed


def test_files_a_readonly_cache_holds_are_present_but_not_counted_here(tmp_path, monkeypatch):
    for name in ("KOA_CALIBRATIONS_URL", "KOA_API_TOKEN", "KOA_CALIBRATION_ORIGIN"):
        monkeypatch.delenv(name, raising=False)
    with CalibrationStore("hispec", str(tmp_path / "shared"), connect_remote=False) as shared:
        in_shared = register(shared, 3)
    monkeypatch.setenv("KOA_CALIBRATION_CACHE_READONLY", str(tmp_path / "shared"))
    with CalibrationStore("hispec", str(tmp_path / "mine"), connect_remote=False) as store:
        own = register(store, 2, start=10)
        status = cache_status(store.cache)
        assert status["records"] == len(in_shared) + len(own)
        assert status["files_not_downloaded"] == 0
        assert status["cache_bytes"]["calibrations"] == sum(r["file_size"] for r in own)
        (tmp_path / "shared" / "calibrations" / "hispec" / in_shared[2]["filename"]).unlink()
        assert [m["id"] for m in cache_status(store.cache)["missing_files"]] == [in_shared[2]["id"]]


def test_counts_by_type_and_origin_match_the_records(store):
    register(store, 4)
    assert cache_status(store.cache)["by_type_origin"] == [
        {"cal_type": "dark", "origin": store.origin, "count": 4}
    ]
    register(store, 3, start=20, origin="OTHER-DRP", cal_type="flat")
    register(store, 2, start=40, origin="OTHER-DRP")
    expected = Counter((r["cal_type"], r["origin"]) for r in store.local_db.rows)
    counted = {(row["cal_type"], row["origin"]): row["count"] for row in
               cache_status(store.cache)["by_type_origin"]}  # fmt: skip
    assert counted == expected and len(counted) == 3


def test_counting_by_a_column_that_is_not_there_says_which_are(store):
    with pytest.raises(InvalidRecordError, match="cal_type"):
        store.local_db.count_by("nope")
    with pytest.raises(InvalidRecordError, match="Invalid column name"):
        store.local_db.count_by('origin" FROM x; --')

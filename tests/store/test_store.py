"""CalibrationStore on a local cache: every method of the reference."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from koa_middleware import CalibrationSelector, CalibrationStore, SupportsCalibrationModelIO
from koa_middleware.errors import (
    CalibrationNotFoundError,
    ChecksumMismatchError,
    ConfigurationError,
    InvalidRecordError,
    RemoteUnavailableError,
)
from koa_middleware.hashing import file_md5
from support.cache_state import temp_files
from support.models import FileModel, dark


class DarkSelector(CalibrationSelector):
    def get_candidates(self, input, db, **kwargs):
        return db.table.rows_where(
            "cal_type = 'dark' AND spectrograph = :spectrograph",
            {"spectrograph": input["spectrograph"]},
            order_by="datetime_obs DESC",
            limit=1,
        )


class FallbackSelector(DarkSelector):
    def select_fallback(self, input, db, **kwargs):
        return db.query(cal_type="dark", fetch="first")


def test_construction_creates_the_cache_layout(tmp_path):
    cache = tmp_path / "cache"
    with CalibrationStore("HISPEC", str(cache), connect_remote=False) as store:
        assert (cache / "calibrations" / "hispec").is_dir()
        assert (cache / "database" / "hispec_calibrations.db").is_file()
        assert store.local_db.table_name == "hispec"
        assert store.remote_db is None
        assert "hispec" in repr(store) and str(cache) in repr(store)


def test_construction_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KOA_CALIBRATION_CACHE", str(tmp_path / "envcache"))
    monkeypatch.setenv("KOA_INSTRUMENT_NAME", "Liger")
    monkeypatch.setenv("KOA_LOCAL_CALIBRATION_DATABASE_FILENAME", "mine.db")
    monkeypatch.setenv("KOA_LOCAL_CALIBRATION_DATABASE_TABLE_NAME", "cals")
    monkeypatch.setenv("KOA_CALIBRATIONS_ORIGIN", "wmko")
    monkeypatch.setenv("KOA_USE_CACHED_CALIBRATIONS", "off")
    with CalibrationStore(connect_remote=False) as store:
        assert store.instrument_name == "liger"
        assert (tmp_path / "envcache" / "database" / "mine.db").is_file()
        assert store.local_db.table_name == "cals"
        assert store.origin == "WMKO"
        assert store.use_cached is False


def test_tilde_cache_dir_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with CalibrationStore("hispec", "~/kc", connect_remote=False) as store:
        assert store.cache_dir == str(tmp_path / "kc")


def test_missing_settings_say_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("KOA_CALIBRATION_CACHE", raising=False)
    monkeypatch.delenv("KOA_INSTRUMENT_NAME", raising=False)
    with pytest.raises(ConfigurationError, match="KOA_CALIBRATION_CACHE"):
        CalibrationStore("hispec", connect_remote=False)
    with pytest.raises(ConfigurationError, match="KOA_INSTRUMENT_NAME"):
        CalibrationStore(cache_dir=str(tmp_path), connect_remote=False)
    monkeypatch.setenv("KOA_USE_CACHED_CALIBRATIONS", "maybe")
    with pytest.raises(ConfigurationError, match="KOA_USE_CACHED_CALIBRATIONS"):
        CalibrationStore("hispec", str(tmp_path), connect_remote=False)


def test_memory_database(tmp_path):
    with CalibrationStore("hispec", str(tmp_path), ":memory:", connect_remote=False) as store:
        store.register_calibration(FileModel(dark(1)))
        assert len(store.local_db) == 1
        assert not (tmp_path / "database" / ":memory:").exists()


def test_close_is_idempotent(store):
    _, record = store.register_calibration(FileModel(dark(1)))
    view = store.selection_db()
    store.close()
    store.close()  # again: nothing left to close, and no error
    for conn in (store.local_db.conn, view.conn):
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            conn.execute("SELECT 1")
    # SQLite removes the write-ahead log when the last connection to the file closes
    assert not Path(f"{store.local_db.db_path}-wal").exists()
    with CalibrationStore("hispec", store.cache_dir, connect_remote=False) as again:
        assert again.local_db.query_id(record["id"])["filename"] == record["filename"]


def test_register_assigns_fields_and_writes_the_file(store):
    model = FileModel(dark(1), data=b"dark frame")
    assert isinstance(model, SupportsCalibrationModelIO)
    path, record = store.register_calibration(model)
    assert Path(path) == Path(store.data_dir) / "dark_00001.fits"
    assert Path(path).read_bytes() == b"dark frame"
    assert record["origin"] == "LOCAL" and record["cal_version"] == "001"
    assert record["file_md5"] == file_md5(path) and record["file_size"] == 10
    assert record["last_updated"] and len(record["id"]) == 36
    assert store.local_db.query_id(record["id"])["file_md5"] == record["file_md5"]
    # the model's own dict was updated in place
    assert model.record["cal_version"] == "001" and model.record["id"] == record["id"]


def test_register_skips_same_family_unless_new_version(store, caplog):
    _, first = store.register_calibration(FileModel(dark(1)))
    caplog.set_level("INFO")
    path, again = store.register_calibration(FileModel(dark(1, filename="other.fits")))
    assert again["id"] == first["id"] and path.endswith("dark_00001.fits")
    assert "already cached" in caplog.text
    assert not (Path(store.data_dir) / "other.fits").exists()
    _, second = store.register_calibration(FileModel(dark(1, filename="v2.fits")), new_version=True)
    assert second["cal_version"] == "002"
    _, keck = store.register_calibration(
        FileModel(dark(1, filename="k.fits")), origin="keck", new_version=True
    )
    assert (keck["origin"], keck["cal_version"]) == ("KECK", "001")


def test_register_skips_same_id(store):
    _, first = store.register_calibration(FileModel(dark(1)))
    path, again = store.register_calibration(
        FileModel(dark(2, id=first["id"], filename="x.fits")), new_version=True
    )
    assert again == store.local_db.query_id(first["id"])


def test_model_sees_its_version_before_save(store):
    model = FileModel(dark(1, filename="flat.fits"), version_in_name=True)
    store.register_calibration(model)
    model2 = FileModel(dark(1, filename="flat.fits"), version_in_name=True)
    path, record = store.register_calibration(model2, new_version=True)
    assert record["filename"] == "flat_v002.fits" and path.endswith("flat_v002.fits")
    assert Path(path).is_file()


def test_family_override_in_subclass(tmp_path):
    class HispecStore(CalibrationStore):
        def get_version_family_column_names(self, cal_type):
            return ["cal_type", "spectrograph"]

    with HispecStore("hispec", str(tmp_path), connect_remote=False) as store:
        a = dark(1)
        b = dark(2, spectrograph="spec_a")  # other night, same family here
        c = dark(3, spectrograph="spec_b")
        assert store.get_version_family_values(a) == {"cal_type": "dark", "spectrograph": "spec_a"}
        store.register_calibration(FileModel(a))
        assert store.generate_calibration_version(b) == "002"
        assert store.generate_calibration_version(c) == "001"
        assert store.register_calibration(FileModel(b))[1]["filename"] == "dark_00001.fits"


def test_generate_version_and_record_from(store):
    assert store.generate_calibration_version(dark(1)) == "001"
    store.register_calibration(FileModel(dark(1)))
    assert store.generate_calibration_version(dark(1)) == "002"
    assert store.generate_calibration_version(dark(1), origin="keck") == "001"
    record = dark(5)
    assert store.record_from(record) is record
    assert store.record_from(FileModel(record)) is record
    with pytest.raises(ValueError):
        store.record_from(42)
    # the shipped HISPEC profile splits families by spectrograph and era
    assert store.get_version_family_column_names("dark") == [
        "cal_type",
        "spectrograph",
        "instrument_era",
        "datetime_obs",
    ]


def test_record_in_cache_modes(store):
    path, record = store.register_calibration(FileModel(dark(1), data=b"abc"))
    store.register_calibration(FileModel(dark(1, filename="b.fits")), new_version=True)
    assert store.calibration_record_in_cache(record["id"])["filename"] == "dark_00001.fits"
    assert store.calibration_record_in_cache(path)["id"] == record["id"]
    assert store.calibration_record_in_cache(record)["id"] == record["id"]
    latest = store.calibration_record_in_cache(dark(1), mode="version-family")
    assert latest["cal_version"] == "002"
    assert store.calibration_record_in_cache(path, mode="md5")["id"] == record["id"]
    assert store.calibration_record_in_cache({"file_md5": record["file_md5"]}, mode="md5")
    assert store.calibration_record_in_cache(dark(9), mode="version-family") is None
    assert store.calibration_record_in_cache("11111111-1111-4111-8111-111111111111") is None
    with pytest.raises(ValueError, match="mode"):
        store.calibration_record_in_cache(record, mode="size")


def test_file_in_cache(store):
    path, record = store.register_calibration(FileModel(dark(1)))
    assert store.calibration_file_in_cache(record["id"]) == path
    assert store.calibration_file_in_cache(record) == path
    assert store.calibration_file_in_cache("dark_00001.fits") == path
    assert store.calibration_file_in_cache(record, filename="nothing.fits") is None
    os.remove(path)
    assert store.calibration_file_in_cache(record["id"]) is None


def test_get_calibration_by_id_record_and_path(store):
    path, record = store.register_calibration(FileModel(dark(1)))
    for key in (record["id"], record, path, "dark_00001.fits"):
        got_path, got = store.get_calibration(key)
        assert got_path == path and got["id"] == record["id"]


def test_get_calibration_without_remote_raises_clearly(store):
    with pytest.raises(CalibrationNotFoundError, match="no archive is configured"):
        store.get_calibration("11111111-1111-4111-8111-111111111111")
    path, record = store.register_calibration(FileModel(dark(1)))
    os.remove(path)
    with pytest.raises(RemoteUnavailableError, match="KOA_CALIBRATIONS_URL"):
        store.get_calibration(record["id"])


def test_get_missing_local_files(store):
    paths = [store.register_calibration(FileModel(dark(i)))[0] for i in range(3)]
    assert store.get_missing_local_files() == []
    os.remove(paths[1])
    assert [r["filename"] for r in store.get_missing_local_files()] == ["dark_00001.fits"]


def test_select_and_get_calibration(store):
    store.register_calibration(FileModel(dark(1)))
    _, newest = store.register_calibration(FileModel(dark(5)))
    store.register_calibration(FileModel(dark(7, spectrograph="spec_b")))
    path, record = store.select_and_get_calibration({"spectrograph": "spec_a"}, DarkSelector())
    assert record["id"] == newest["id"] and Path(path).is_file()
    with pytest.raises(CalibrationNotFoundError, match="DarkSelector.*spec_c"):
        store.select_and_get_calibration({"spectrograph": "spec_c"}, DarkSelector())
    _, fallback = store.select_and_get_calibration({"spectrograph": "spec_c"}, FallbackSelector())
    assert fallback["cal_type"] == "dark"


def test_query_and_last_updated_local(store):
    _, record = store.register_calibration(FileModel(dark(1)))
    assert store.query(cal_type="dark")[0]["id"] == record["id"]
    assert store.query(source="local", cal_id=record["id"])["id"] == record["id"]
    assert store.get_last_updated() == record["last_updated"]
    assert store.get_last_updated(source="local") == record["last_updated"]
    with pytest.raises(RemoteUnavailableError):
        store.query(source="remote")
    with pytest.raises(ValueError, match="source"):
        store.query(source="elsewhere")


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("download_calibration_file", ("11111111-1111-4111-8111-111111111111",)),
        ("get_missing_records", ()),
        ("sync_records_from_remote", ()),
        ("sync_records_to_remote", ()),
        ("prefetch", (["11111111-1111-4111-8111-111111111111"],)),
    ],
)
def test_remote_methods_need_an_archive(store, method, args):
    with pytest.raises(RemoteUnavailableError, match="no archive is configured"):
        getattr(store, method)(*args)


def test_save_calibration_file(store):
    model = FileModel(dark(1), data=b"saved")
    path = store.save_calibration_file(model)
    assert path == str(Path(store.data_dir) / "dark_00001.fits")  # the model names its file
    assert Path(path).read_bytes() == b"saved" and len(store.local_db) == 0
    model.data = b"saved again"
    assert store.save_calibration_file(model, {"filename": "ignored.fits"}) == path
    assert Path(path).read_bytes() == b"saved again"  # no record owns it yet
    assert temp_files(store.layout) == []
    registered, _ = store.register_calibration(FileModel(dark(2), data=b"registered"))
    with pytest.raises(InvalidRecordError, match="registered calibration"):
        store.save_calibration_file(FileModel(dark(2), data=b"other bytes"))
    assert Path(registered).read_bytes() == b"registered"
    with pytest.raises(InvalidRecordError):
        store._get_local_filepath("../out.fits")


def test_sync_records_from_cached_files(store):
    cached = Path(store.data_dir) / "old_dark.fits"
    cached.write_bytes(b"old")
    other = Path(store.data_dir) / "old_flat.fits"
    other.write_bytes(b"flat")
    store.sync_records_from_cached_files(
        [dark(1, filename="old_dark.fits"), FileModel(dark(2, filename="old_flat.fits"))]
    )
    record = store.local_db.query_filename("old_dark.fits")
    assert record["file_md5"] == file_md5(cached) and record["cal_version"] == "001"
    assert store.get_calibration(record["id"])[0] == str(cached)
    # a file not in the cache: recorded all the same, as the reference does (not downloaded)
    (absent,) = store.sync_records_from_cached_files(dark(3, filename="absent.fits"))
    assert absent["filename"] == "absent.fits" and absent.get("file_md5") is None
    with pytest.raises(ChecksumMismatchError):
        store.sync_records_from_cached_files(dark(4, filename="old_dark.fits", file_md5="0" * 32))
    assert len(store.local_db) == 3


def test_detect_version_issues(store):
    for _ in range(3):
        store.register_calibration(FileModel(dark(1, filename=f"d{_}.fits")), new_version=True)
    assert store.detect_version_issues() == []
    rows = store.local_db.query(order_by="cal_version")
    store.local_db.add({**rows[2], "cal_version": "005"})
    store.local_db.add({**rows[1], "cal_version": "001"})
    issues = {(i["issue"], i["cal_version"]) for i in store.detect_version_issues()}
    assert issues == {("duplicate", "001"), ("gap", "002"), ("gap", "003"), ("gap", "004")}


def test_start_cleans_stale_temporary_files_but_keeps_partial_downloads(tmp_path):
    cache = tmp_path / "cache"
    CalibrationStore("hispec", str(cache), connect_remote=False).close()
    tmp = cache / "tmp" / "hispec"
    stale, fresh, partial = tmp / "a.fits.part", tmp / "b.fits.part", tmp / "c.download"
    for path in (stale, fresh, partial):
        path.write_bytes(b"x")
    hour_ago = os.path.getmtime(fresh) - 3600
    os.utime(stale, (hour_ago, hour_ago))
    os.utime(partial, (hour_ago, hour_ago))
    CalibrationStore("hispec", str(cache), connect_remote=False).close()
    assert not stale.exists()
    assert fresh.exists() and partial.exists()

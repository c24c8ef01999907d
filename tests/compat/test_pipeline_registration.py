"""A pipeline's CalibrationStore subclass, every registration step overridden, runs unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from compat.hispec_pipeline.datamodel import HispecCalibration, read_header
from compat.hispec_pipeline.store import (
    EarlierPipelineStore,
    EarlierSuperPipelineStore,
    HispecCalibrationStore,
)

from koa_middleware import CalibrationStore
from koa_middleware.errors import CalibrationSaveError, ChecksumMismatchError, InvalidRecordError
from support.cache_state import temp_files


def dark(spectrograph: str = "yj", day: int = 1, **extra) -> dict:
    meta = {
        "cal_type": "dark",
        "spectrograph": spectrograph,
        "datetime_obs": f"2026-03-{day:02d}T04:00:00.000",
        "mjd_start": 61100.0 + day,
        "master_cal": True,
    }
    meta.update(extra)
    return meta


@pytest.fixture(params=[HispecCalibrationStore, EarlierPipelineStore])
def store(request, tmp_path, no_koa_environment):
    with request.param("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        yield store


def cache_files(store) -> set[str]:
    return {p.name for p in Path(store.layout.calibrations_dir).iterdir()}


def test_every_step_runs_in_order_and_the_file_is_named_by_the_model(store):
    model = HispecCalibration(dark(), data=os.urandom(5000))
    path, record = store.register_calibration(model)
    assert store.calls == ["prepare", "save", "finalize"]
    assert Path(path) == store.layout.calibrations_dir / "hispec_dark_yj_20260301_v001.fits"
    assert record["filename"] == Path(path).name  # not a temporary name
    assert record["cal_version"] == "001" and record["origin"] == "LOCAL"
    assert record["drp_version"] == "1.4.0"  # what the prepare override added
    data = Path(path).read_bytes()
    assert record["file_md5"] == hashlib.md5(data).hexdigest()
    assert record["file_size"] == len(data)
    assert read_header(path) == {"CALVER": "001", "ORIGIN": "LOCAL"}
    assert store.local_db.query_id(record["id"]) == record
    assert cache_files(store) == {record["filename"]}
    assert temp_files(store.layout) == []
    assert store.data_dir == os.path.join(str(store.layout.calibrations_dir), "")


def test_versions_follow_the_overridden_family(store):
    _, first = store.register_calibration(HispecCalibration(dark("yj")))
    _, other = store.register_calibration(HispecCalibration(dark("hk")))
    path, again = store.register_calibration(HispecCalibration(dark("yj")), new_version=True)
    assert (first["cal_version"], other["cal_version"], again["cal_version"]) == (
        "001",
        "001",
        "002",
    )
    assert read_header(path)["CALVER"] == "002"
    assert first["filename"] != again["filename"]  # the earlier version's file is kept
    assert cache_files(store) == {first["filename"], other["filename"], again["filename"]}
    skipped_path, skipped = store.register_calibration(HispecCalibration(dark("yj")))
    assert skipped["id"] == again["id"] and Path(skipped_path).is_file()


def test_the_store_origin_wins_over_the_record_origin_as_in_the_reference(tmp_path):
    meta = dark(origin="SOMEWHERE")
    with HispecCalibrationStore("hispec", str(tmp_path / "a"), connect_remote=False) as store:
        assert store.register_calibration(HispecCalibration(dict(meta)))[1]["origin"] == "SOMEWHERE"
    with HispecCalibrationStore(
        "hispec", str(tmp_path / "b"), connect_remote=False, origin="keck"
    ) as store:
        _, record = store.register_calibration(HispecCalibration(dict(meta)))
        assert record["origin"] == "KECK"
        assert read_header(store.calibration_file_in_cache(record))["ORIGIN"] == "KECK"
        _, record = store.register_calibration(HispecCalibration(dark("hk")), origin="ops")
        assert record["origin"] == "OPS"


def test_a_finalize_step_that_lies_about_the_file_is_refused(tmp_path, no_koa_environment):
    class Lying(HispecCalibrationStore):
        def _finalize_cal_record(self, cal, cal_record, local_filepath):
            cal_record = super()._finalize_cal_record(cal, cal_record, local_filepath)
            cal_record["file_md5"] = "0" * 32
            return cal_record

    with Lying("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        with pytest.raises(ChecksumMismatchError, match="_finalize_cal_record"):
            store.register_calibration(HispecCalibration(dark()))
        assert len(store.local_db) == 0 and cache_files(store) == set()
        assert temp_files(store.layout) == []


def test_a_save_step_that_writes_straight_into_the_cache_is_adopted(tmp_path):
    class Direct(HispecCalibrationStore):
        def save_calibration_file(self, cal, cal_record=None):
            folder = os.path.join(self.cache_dir, "calibrations", self.instrument_name)
            return cal.save(output_dir=folder)

    with Direct("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        path, record = store.register_calibration(HispecCalibration(dark()))
        assert Path(path).is_file() and store.local_db.query_id(record["id"])
        assert cache_files(store) == {record["filename"]}
        assert temp_files(store.layout) == []
        # a step that writes over a registered file gets no record for it
        same_name = HispecCalibration(dark(), data=b"other")
        same_name.make_filename = lambda: record["filename"]
        with pytest.raises(InvalidRecordError, match="registered calibration"):
            store.register_calibration(same_name, new_version=True)
        assert len(store.local_db) == 1


def test_a_save_step_that_fails_leaves_nothing(tmp_path, no_koa_environment):
    class Failing(HispecCalibrationStore):
        def save_calibration_file(self, cal, cal_record=None):
            with open(os.path.join(self.data_dir, "partial.fits"), "wb") as handle:
                handle.write(b"half")
            raise OSError("disk full")

    with Failing("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        with pytest.raises(OSError, match="disk full"):
            store.register_calibration(HispecCalibration(dark()))
        assert len(store.local_db) == 0 and cache_files(store) == set()
        assert temp_files(store.layout) == []


def test_the_default_save_step_calls_save_with_output_dir_only(tmp_path, no_koa_environment):
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        path, record = store.register_calibration(HispecCalibration(dark()))
        assert record["filename"] == "hispec_dark_yj_20260301_v001.fits"
        assert Path(path).parent == store.layout.calibrations_dir

        class NoFile(HispecCalibration):
            def save(self, *args, output_path=None, output_dir=None, **kwargs):
                return os.path.join(output_dir, "never-written.fits")

        with pytest.raises(CalibrationSaveError, match="Nothing was registered"):
            store.register_calibration(NoFile(dark("hk", day=2)))
        assert len(store.local_db) == 1


def test_protected_helpers_answer_as_the_reference(store):
    assert store._get_next_calibration_version(dark()) == "001"
    _, first = store.register_calibration(HispecCalibration(dark()))
    _, second = store.register_calibration(HispecCalibration(dark()), new_version=True)
    assert store._get_next_calibration_version(dark()) == "003"
    assert store._get_next_calibration_version(dark(), origin="KECK") == "001"
    assert store.generate_calibration_version(dark()) == "003"
    assert store._get_local_filepath(first) == str(store.layout.path_for(first["filename"]))
    assert store._get_local_filepath({"cal_type": "dark"}) is None
    with pytest.raises(TypeError):
        store._get_local_filepath(42)
    assert store._calibration_record_in_cache_id(first["id"]) == first
    assert store._calibration_record_in_cache_id(dict(second)) == second
    with pytest.raises(ValueError):
        store._calibration_record_in_cache_id("not-an-id")
    assert store._calibration_record_in_cache_filename({"filename": second["filename"]}) == second
    family = store._calibration_record_in_cache_version_family(dark())
    assert [r["id"] for r in family] == [first["id"], second["id"]]
    one = store._calibration_record_in_cache_version_family(second, include_version=True)
    assert one == second
    assert store._calibration_record_in_cache_version_family(dark("hk")) is None
    assert store._calibration_record_in_cache_md5(store._get_local_filepath(first)) == first
    prepared = store._prepare_cal_record(dark(), origin="keck", last_updated=False)
    assert prepared["cal_version"] == "001" and prepared["origin"] == "KECK"
    assert "last_updated" not in prepared


def test_an_empty_family_value_matches_only_an_empty_value(store):
    _, without = store.register_calibration(HispecCalibration(dark(spectrograph="")))
    assert without["cal_version"] == "001"
    assert store._calibration_record_in_cache_version_family(dark(spectrograph="hk")) is None
    meta = {k: v for k, v in dark().items() if k != "spectrograph"}
    assert store._calibration_record_in_cache_version_family(meta) is None
    assert store._get_next_calibration_version(meta) == "001"


def test_sync_records_from_cached_files_versions_one_after_another(store):
    names = []
    for i in range(3):
        path = store.layout.calibrations_dir / f"old_{i}.fits"
        path.write_bytes(f"old dark {i}".encode())
        names.append(path.name)
    models = [HispecCalibration(dark(filename=name)) for name in names]
    added = store.sync_records_from_cached_files(models)
    assert [r["cal_version"] for r in added] == ["001", "002", "003"]
    assert {r["origin"] for r in added} == {"LOCAL"}
    assert all(r["drp_version"] == "1.4.0" for r in added)  # the prepare override ran
    for record in added:
        data = (store.layout.calibrations_dir / record["filename"]).read_bytes()
        assert record["file_md5"] == hashlib.md5(data).hexdigest()
    assert store.detect_version_issues() == []


def test_an_earlier_finalize_override_may_call_super_the_earlier_way(tmp_path, no_koa_environment):
    cache = str(tmp_path / "cache")
    with EarlierSuperPipelineStore("hispec", cache, connect_remote=False) as store:
        model = HispecCalibration(dark(), data=os.urandom(3000))
        path, record = store.register_calibration(model)
        data = Path(path).read_bytes()
        assert record["filename"] == Path(path).name == "hispec_dark_yj_20260301_v001.fits"
        assert record["file_md5"] == record["md5_at_finalize"] == hashlib.md5(data).hexdigest()
        assert record["file_size"] == len(data)
        assert store.local_db.query_id(record["id"]) == record

"""After registration, a model that records where it saved its file points at the registered one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from compat.hispec_pipeline.stdmodel import HispecDarkModel
from compat.hispec_pipeline.store import EarlierPipelineStore, HispecCalibrationStore

from koa_middleware import CalibrationStore
from koa_middleware.cache.registration import versioned_filename
from koa_middleware.errors import InvalidRecordError
from support.cache_state import temp_files

DARK = {
    "cal_type": "dark",
    "spectrograph": "yj",
    "datetime_obs": "2026-03-01T04:00:00.000",
    "mjd_start": 61101.0,
    "master_cal": True,
}


def md5_of(path: str) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture(params=[CalibrationStore, HispecCalibrationStore, EarlierPipelineStore])
def store(request, tmp_path, no_koa_environment):
    with request.param("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        yield store


def test_five_versions_of_a_family_each_point_at_their_registered_file(store):
    models = [HispecDarkModel(os.urandom(3000), **DARK) for _ in range(5)]
    results = [store.register_calibration(model, new_version=True) for model in models]
    assert [record["cal_version"] for _, record in results] == ["001", "002", "003", "004", "005"]
    assert len({path for path, _ in results}) == 5
    for model, (path, record) in zip(models, results, strict=True):
        assert model._filepath == path
        assert model.meta.filename == Path(path).name == record["filename"]
        assert Path(path).parent == store.layout.calibrations_dir
        assert md5_of(path) == record["file_md5"]
        assert Path(path).read_bytes().endswith(model.data)
    assert temp_files(store.layout) == []


def test_a_model_answered_by_the_registered_calibration(tmp_path, no_koa_environment):
    # the default steps: a pipeline's save step may write more into its file
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        path, record = store.register_calibration(HispecDarkModel(b"the dark", **DARK))
        same = HispecDarkModel(b"the dark", **DARK)
        same_path, same_record = store.register_calibration(same)
        assert same_record["id"] == record["id"] and same._filepath == same_path == path
        assert same.meta.filename == record["filename"]
        # other bytes are not registered: the model keeps what it had, the file stays
        other = HispecDarkModel(b"another dark", **DARK)
        other._filepath = "/data/night/dark_stack.fits"
        other_path, other_record = store.register_calibration(other)
        assert other_record["id"] == record["id"] and other_path == path
        assert other._filepath == "/data/night/dark_stack.fits" and other.meta.filename is None
        assert md5_of(path) == record["file_md5"]


def test_a_file_name_already_registered_is_never_overwritten(store):
    first = HispecDarkModel(b"first dark", **DARK)
    path, record = store.register_calibration(first)
    # a new version of the family that names its file as the first's gets a file of its own
    clash = HispecDarkModel(b"second dark", **DARK)
    clash.make_filename = lambda: record["filename"]
    new_path, new_record = store.register_calibration(clash, new_version=True)
    assert new_record["cal_version"] == "002"
    assert new_record["filename"] == versioned_filename(record["filename"], "002")
    assert clash._filepath == new_path and clash.meta.filename == new_record["filename"]
    assert md5_of(new_path) == new_record["file_md5"] != record["file_md5"]
    assert md5_of(path) == record["file_md5"] and first._filepath == path
    # a calibration of another family that names its file as the first's is refused
    other = HispecDarkModel(b"other dark", **{**DARK, "spectrograph": "hk"})
    other.make_filename = lambda: record["filename"]
    with pytest.raises(InvalidRecordError, match="another version family"):
        store.register_calibration(other, new_version=True)
    assert other._filepath is None and other.meta.filename is None  # nothing dangling
    assert md5_of(path) == record["file_md5"] and first._filepath == path
    assert len(store.local_db) == 2 and temp_files(store.layout) == []


def test_save_calibration_file_alone_points_the_model_at_the_cached_file(tmp_path):
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        model = HispecDarkModel(b"saved alone", **DARK)
        path = store.save_calibration_file(model)
        assert model._filepath == path and Path(path).is_file()
        assert Path(path).parent == store.layout.calibrations_dir
        assert model.meta.filename == Path(path).name

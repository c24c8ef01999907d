"""Registering into a version family that already holds a calibration (new_version=False)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.errors import CalibrationNotFoundError
from koa_middleware.hashing import file_md5
from support.models import FileModel, dark


@pytest.fixture
def store(tmp_path):
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        yield store


def test_the_same_bytes_again_answer_the_registered_calibration(store, caplog):
    first_path, first = store.register_calibration(FileModel(dark(), b"A" * 4096))
    with caplog.at_level(logging.WARNING):
        path, record = store.register_calibration(FileModel(dark(), b"A" * 4096))
    assert (path, record["id"]) == (first_path, first["id"])
    assert len(store.local_db) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_other_bytes_are_not_registered_and_a_warning_names_both_files(store, caplog):
    first_path, first = store.register_calibration(FileModel(dark(), b"A" * 4096))
    other = FileModel(dark(), b"B" * 4096)
    with caplog.at_level(logging.WARNING):
        path, record = store.register_calibration(other)
    assert record["id"] == first["id"]
    assert Path(path).read_bytes() == b"A" * 4096  # the cached calibration is untouched
    assert len(store.local_db) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert first_path in warnings[0] and "dark_00000.fits" in warnings[0]
    assert "--new-version" in warnings[0]


def test_a_lost_file_is_put_back_from_the_same_bytes(store):
    path, first = store.register_calibration(FileModel(dark(), b"A" * 4096))
    Path(path).unlink()
    again, record = store.register_calibration(FileModel(dark(), b"A" * 4096))
    assert (again, record["id"]) == (path, first["id"])
    assert file_md5(again) == first["file_md5"]
    assert store.get_calibration(first["id"])[0] == path


def test_a_lost_file_and_other_bytes_raise_instead_of_answering_a_missing_path(store):
    path, first = store.register_calibration(FileModel(dark(), b"A" * 4096))
    Path(path).unlink()
    with pytest.raises(CalibrationNotFoundError, match="--new-version") as caught:
        store.register_calibration(FileModel(dark(), b"B" * 4096))
    assert "verify --repair" in str(caught.value)
    assert not Path(path).exists()  # other bytes never take the old calibration's place
    assert [r["id"] for r in store.local_db.rows] == [first["id"]]


def test_new_version_registers_other_bytes_as_the_next_version(store):
    store.register_calibration(FileModel(dark(), b"A" * 4096))
    path, record = store.register_calibration(
        FileModel(dark(filename="dark_b.fits"), b"B" * 4096), new_version=True
    )
    assert record["cal_version"] == "002"
    assert Path(path).read_bytes() == b"B" * 4096


def test_registering_the_same_model_twice_saves_it_once(store):
    model = FileModel(dark(), b"A" * 4096)
    store.register_calibration(model)
    saved = len(model.saved_to)
    path, record = store.register_calibration(model)  # same id: nothing to compare
    assert len(model.saved_to) == saved
    assert Path(path).is_file() and record["cal_version"] == "001"


@pytest.mark.parametrize("cal_type", ["object", "science"])
def test_registering_a_science_frame_warns(store, caplog, cal_type):
    with caplog.at_level(logging.WARNING):
        path, _record = store.register_calibration(FileModel(dark(cal_type=cal_type)))
    assert Path(path).is_file()  # registered all the same
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "science frame" in warning and "--cal-type" in warning


def test_a_type_the_profile_does_not_know_warns_and_a_known_one_does_not(store, caplog):
    with caplog.at_level(logging.WARNING):
        store.register_calibration(FileModel(dark()))
        assert not caplog.records
        store.register_calibration(FileModel(dark(1, cal_type="pinhole")))
    [warning] = [r.getMessage() for r in caplog.records]
    assert "'pinhole'" in warning and "dark" in warning

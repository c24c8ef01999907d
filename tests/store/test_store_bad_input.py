"""Every bad input gets a specific error and leaves the database and cache as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from koa_middleware.errors import (
    CalibrationNotFoundError,
    CalibrationSaveError,
    InvalidRecordError,
    VersionLimitError,
)
from support.cache_state import temp_files
from support.models import FailingModel, FileModel, NowhereModel, dark


def snapshot(store):
    """What a user could see: every record, and every file under the cache with its bytes."""
    rows = sorted(store.local_db.rows, key=lambda r: r["id"])
    root = store.layout.root
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "database" not in p.parts and "locks" not in p.parts
    }
    return rows, files


@pytest.fixture
def seeded(store, tmp_path):
    """A store holding one calibration, and a sentinel file outside the cache."""
    store.register_calibration(FileModel(dark(0)))
    sentinel = tmp_path / "sentinel.fits"
    sentinel.write_bytes(b"do not touch")
    return store, sentinel


def bad_cases(sentinel):
    traversal = "../../../" + sentinel.name
    return {
        "no filename": ({k: v for k, v in dark(1).items() if k != "filename"}, "filename"),
        "no cal_type": ({k: v for k, v in dark(1).items() if k != "cal_type"}, "cal_type"),
        "no datetime_obs": (
            {k: v for k, v in dark(1).items() if k != "datetime_obs"},
            "cal_type|datetime_obs",
        ),
        "id not a uuid": (dark(1, id="not-a-uuid"), "Invalid calibration id"),
        "traversal name": (dark(1, filename=traversal), "Invalid file name"),
        "absolute name": (dark(1, filename=str(sentinel)), "Invalid file name"),
        "sub-folder name": (dark(1, filename="a/b.fits"), "Invalid file name"),
        "dot-dot name": (dark(1, filename=".."), "Invalid file name"),
        "NUL in name": (dark(1, filename="a\x00b.fits"), "Invalid file name"),
        "long name": (dark(1, filename="x" * 251 + ".fits"), "Invalid file name"),
        "bad column": ({**dark(1), "cal_type; DROP TABLE x": 1}, "Invalid column name"),
        "spaced column": ({**dark(1), "a b": 1}, "Invalid column name"),
        "nested dict": (dark(1, extra={"a": 1}), "nested"),
        "nested list": (dark(1, extra=[1, 2]), "nested"),
        "bad datetime": (dark(1, datetime_obs="2024-02-30T00:00:00"), "datetime_obs"),
    }


CASES = list(bad_cases(Path("sentinel.fits")))


@pytest.mark.parametrize("case", CASES)
def test_bad_record_through_local_db_add(seeded, case):
    store, sentinel = seeded
    record, message = bad_cases(sentinel)[case]
    record = {"id": "2b4e28ba-2fa1-4d2b-883f-0016d3cca427", **record}
    before = snapshot(store)
    with pytest.raises(InvalidRecordError, match=message):
        store.local_db.add(record)
    assert snapshot(store) == before
    assert sentinel.read_bytes() == b"do not touch"


# A record without a file name is fine for registration: the model names its file.
@pytest.mark.parametrize("case", [c for c in CASES if c != "no filename"])
def test_bad_record_through_register(seeded, case):
    store, sentinel = seeded
    record, message = bad_cases(sentinel)[case]
    before = snapshot(store)
    with pytest.raises(InvalidRecordError, match=message):
        store.register_calibration(FileModel(record, data=b"EVIL"), new_version=True)
    assert snapshot(store) == before
    assert sentinel.read_bytes() == b"do not touch"
    assert temp_files(store.layout) == []


def test_family_at_999_refuses_a_new_version(store):
    rows = [
        {
            **dark(1, filename=f"d{v}.fits"),
            "id": f"00000000-0000-4000-8000-{v:012d}",
            "origin": "LOCAL",
            "cal_version": f"{v:03d}",
        }
        for v in range(990, 1000)
    ]
    store.local_db.add(rows)
    before = snapshot(store)
    with pytest.raises(VersionLimitError, match="999"):
        store.register_calibration(FileModel(dark(1, filename="next.fits")), new_version=True)
    assert snapshot(store) == before
    with pytest.raises(VersionLimitError):
        store.generate_calibration_version(dark(1))


@pytest.mark.parametrize("model_class", [FailingModel, NowhereModel])
def test_model_whose_save_fails_or_writes_nowhere(seeded, model_class):
    store, _ = seeded
    before = snapshot(store)
    with pytest.raises(CalibrationSaveError, match="Nothing was registered"):
        store.register_calibration(model_class(dark(1)), new_version=True)
    assert snapshot(store) == before
    assert temp_files(store.layout) == []


def test_to_record_that_is_not_a_dict(seeded):
    store, _ = seeded

    class Weird(FileModel):
        def to_record(self):
            return ["not", "a", "dict"]

    before = snapshot(store)
    with pytest.raises(InvalidRecordError, match="must return a dict"):
        store.register_calibration(Weird({}))
    assert snapshot(store) == before


def test_file_name_already_in_the_cache_is_not_overwritten(seeded):
    store, _ = seeded
    stray = store.layout.calibrations_dir / "stray.fits"
    stray.write_bytes(b"someone else's")
    with pytest.raises(InvalidRecordError, match="already in the cache"):
        store.register_calibration(FileModel(dark(3, filename="stray.fits")))
    assert stray.read_bytes() == b"someone else's"
    assert store.local_db.query_filename("stray.fits") is None


def test_get_calibration_of_an_id_that_is_nowhere(seeded):
    store, _ = seeded
    before = snapshot(store)
    with pytest.raises(CalibrationNotFoundError, match="not in the local cache"):
        store.get_calibration("3b4e28ba-2fa1-4d2b-883f-0016d3cca427")
    with pytest.raises(CalibrationNotFoundError):
        store.get_calibration("no_such_file.fits")
    assert snapshot(store) == before


def test_get_calibration_with_traversal_path_stays_in_cache(seeded):
    store, sentinel = seeded
    with pytest.raises(CalibrationNotFoundError):
        store.get_calibration(str(sentinel))
    assert sentinel.read_bytes() == b"do not touch"

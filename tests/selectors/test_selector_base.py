"""CalibrationSelector: selection, fallback, options, origin, metadata and explain()."""

from __future__ import annotations

import json
import uuid

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.database.local_database import LocalCalibrationDB
from koa_middleware.errors import CalibrationNotFoundError
from koa_middleware.selector_base import CalibrationSelector, input_metadata, record_mjd
from koa_middleware.selectors import NearestInTimeSelector


def rec(filename, cal_type, when, **extra):
    return {
        "id": str(uuid.uuid4()),
        "filename": filename,
        "cal_type": cal_type,
        "datetime_obs": when,
        "origin": "KECK",
        "cal_version": "001",
        **extra,
    }


@pytest.fixture
def db(tmp_path):
    database = LocalCalibrationDB(tmp_path / "cal.db", "hispec")
    database.add(
        [
            rec("dark1.fits", "dark", "2024-01-01T00:00:00", spectrograph="spec_a"),
            rec("dark2.fits", "dark", "2024-01-02T00:00:00", spectrograph="spec_a"),
            rec("flat1.fits", "flat", "2024-01-01T00:00:00", spectrograph="spec_a"),
        ]
    )
    yield database
    database.close()


class LatestDark(CalibrationSelector):
    def get_candidates(self, input, db, **kwargs):
        return db.table.rows_where(
            "cal_type = 'dark' AND spectrograph = :spectrograph",
            self.get_query_params(input, "spectrograph = :spectrograph"),
            order_by="datetime_obs DESC",
        )


class AnyFlatFallback(LatestDark):
    def select_fallback(self, input, db, **kwargs):
        return db.query(cal_type="flat", fetch="first")


def test_select_runs_candidates_then_best(db):
    assert LatestDark().select({"spectrograph": "spec_a"}, db)["filename"] == "dark2.fits"


def test_select_falls_back_when_nothing_is_found(db):
    assert LatestDark().select({"spectrograph": "spec_z"}, db) is None
    assert AnyFlatFallback().select({"spectrograph": "spec_z"}, db)["filename"] == "flat1.fits"


def test_get_candidates_must_be_overridden(db):
    with pytest.raises(NotImplementedError, match="get_candidates"):
        CalibrationSelector().select({}, db)


def test_select_best_accepts_lists_records_iterables_and_none():
    selector = CalibrationSelector()
    assert selector.select_best({}, None) is None
    assert selector.select_best({}, []) is None
    assert selector.select_best({}, {"id": 1}) == {"id": 1}
    assert selector.select_best({}, iter([{"id": 2}, {"id": 3}])) == {"id": 2}


def test_keyword_arguments_become_attributes_and_origin_resolution(monkeypatch):
    monkeypatch.delenv("KOA_CALIBRATION_ORIGIN", raising=False)
    assert CalibrationSelector(max_days=3).max_days == 3
    assert CalibrationSelector().origin == "ANY"
    monkeypatch.setenv("KOA_CALIBRATION_ORIGIN", "keck")
    assert CalibrationSelector().origin == "KECK"
    assert CalibrationSelector(origin="local").origin == "LOCAL"
    assert CalibrationSelector(origin="keck").origin_clause() == (
        "origin = :origin",
        {"origin": "KECK"},
    )
    assert CalibrationSelector(origin="ANY").origin_clause() == ("1 = 1", {})


def test_get_query_params():
    assert CalibrationSelector.get_query_params({"a": 1, "b": 2}, "x = :a") == {"a": 1}
    with pytest.raises(ValueError, match="lacks"):
        CalibrationSelector.get_query_params({}, "x = :a")
    assert CalibrationSelector.get_query_params({}, "x = :a", strict=False) == {}


def test_input_metadata_normalizes_and_completes_times():
    meta = input_metadata({"datetime_obs": "2024-01-01 12:00:00Z", "x": 1})
    assert meta == {"datetime_obs": "2024-01-01T12:00:00.000", "x": 1, "mjd_start": 60310.5}
    assert input_metadata({"mjd_start": 60310.25})["datetime_obs"] == "2024-01-01T06:00:00.000"

    class Model:
        def to_record(self):
            return {"datetime_obs": "2024-01-01T00:00:00"}

    assert input_metadata(Model())["mjd_start"] == 60310.0
    assert record_mjd({"datetime_obs": "2024-01-02T00:00:00"}) == 60311.0
    assert record_mjd({"filename": "x"}) is None


def test_explain_of_a_custom_selector(db):
    report = LatestDark().explain({"spectrograph": "spec_a", "datetime_obs": "2024-01-02"}, db)
    json.dumps(report)
    assert [c["filename"] for c in report["candidates"]] == ["dark2.fits", "dark1.fits"]
    assert report["chosen"]["filename"] == "dark2.fits"
    assert report["candidates"][0]["chosen"] and not report["candidates"][1]["chosen"]
    assert report["candidates"][0]["matched"] == {"spectrograph": "spec_a"}
    assert report["candidates"][1]["time_distance_days"] == -1.0
    assert report["reason"] == "select_best chose it among 2 candidate(s)"
    assert report["selector"].endswith(":LatestDark")


def test_explain_reports_the_fallback(db):
    report = AnyFlatFallback().explain({"spectrograph": "spec_z"}, db)
    assert report["candidates"] == []
    assert report["fallback"] is True and report["chosen"]["filename"] == "flat1.fits"
    assert "select_fallback" in report["reason"]
    empty = LatestDark().explain({"spectrograph": "spec_z"}, db)
    assert empty["chosen"] is None and empty["eliminated_by"] is None
    assert "no candidate" in empty["reason"]


def test_select_and_get_with_registered_fits_files(tmp_path, monkeypatch):
    import numpy as np
    from astropy.io import fits

    from koa_middleware.fits import FITSCalibration

    monkeypatch.delenv("KOA_CALIBRATIONS_URL", raising=False)
    sources = tmp_path / "incoming"
    sources.mkdir()
    for day in (1, 3, 6):
        hdu = fits.PrimaryHDU(np.full((4, 4), day, dtype=np.float32))
        hdu.header["IMAGETYP"] = "DARK"
        hdu.header["DATE-OBS"] = f"2024-01-0{day}T00:00:00"
        hdu.header["SPECTROG"] = "spec_a"
        hdu.header["INSTERA"] = "era1"
        hdu.writeto(sources / f"dark_0{day}.fits")
    science = tmp_path / "science.fits"
    header = fits.Header({"DATE-OBS": "2024-01-03T20:00:00", "SPECTROG": "spec_a",
                          "INSTERA": "era1"})  # fmt: skip
    fits.PrimaryHDU(header=header).writeto(science)
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        for path in sorted(sources.iterdir()):
            store.register_calibration(FITSCalibration(path))
        path, record = store.select_and_get_calibration(str(science), NearestInTimeSelector("dark"))
        assert record["filename"] == "dark_03.fits"
        assert open(path, "rb").read() == (sources / "dark_03.fits").read_bytes()
        with pytest.raises(CalibrationNotFoundError):
            store.select_and_get_calibration(str(science), NearestInTimeSelector("flat"))

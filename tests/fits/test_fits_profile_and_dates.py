"""Registration through the instrument profile: required keywords, and ISO 8601 dates only.

A HISPEC dark without the spectrograph keyword could never be chosen by the
default selectors (they match on it): registration refuses it, naming the
keyword. ``DATE-OBS = '03/03/25'`` names no century: it is refused, quoted as
the header holds it, instead of becoming 1925-03-03.
"""

from __future__ import annotations

from pathlib import Path

import pytest

fits = pytest.importorskip("astropy.io.fits")
np = pytest.importorskip("numpy")

from koa_middleware import CalibrationStore  # noqa: E402
from koa_middleware.errors import InvalidRecordError  # noqa: E402
from koa_middleware.fits import FITSCalibration, fits_metadata, fits_record  # noqa: E402
from koa_middleware.profiles import HISPEC, LIGER, load_profile  # noqa: E402
from koa_middleware.selectors import NearestInTimeSelector  # noqa: E402


def write_fits(path: Path, **cards) -> Path:
    hdu = fits.PrimaryHDU(np.zeros((4, 4), dtype=np.float32))
    for key, value in cards.items():
        hdu.header[key.replace("_", "-")] = value
    hdu.writeto(path)
    return path


def test_the_hispec_profile_requires_the_spectrograph_of_every_type():
    selector = NearestInTimeSelector("dark")
    assert "spectrograph" in selector.match
    assert HISPEC.cal_types
    for cal_type in HISPEC.cal_types:
        assert "spectrograph" in HISPEC.required_for(cal_type), cal_type
    assert load_profile("hispec").required_for("dark") == ["spectrograph"]


@pytest.mark.parametrize("cal_type", ["DARK", "FLAT", "ARC"])
def test_a_hispec_file_without_the_spectrograph_keyword_is_refused(tmp_path, cal_type):
    path = write_fits(tmp_path / "dark.fits", IMAGETYP=cal_type, DATE_OBS="2025-03-03T02:00:00",
                      INSTERA="era1")  # fmt: skip
    with pytest.raises(InvalidRecordError) as info:
        FITSCalibration(path, profile=load_profile("hispec")).to_record()
    message = str(info.value)
    assert "dark.fits" in message and "SPECTROG" in message and "hispec" in message
    assert cal_type.lower() in message and "spectrograph=" in message
    assert info.value.missing_fields == ["spectrograph"]
    # The keyword, or the field passed, registers it.
    assert FITSCalibration(path, profile=HISPEC, spectrograph="yJ").to_record()["spectrograph"]


def test_registration_through_the_profile_stores_nothing_for_a_refused_file(tmp_path):
    bad = write_fits(tmp_path / "bad.fits", IMAGETYP="DARK", DATE_OBS="2025-03-03T02:00:00")
    good = write_fits(tmp_path / "good.fits", IMAGETYP="DARK", DATE_OBS="2025-03-03T02:00:00",
                      SPECTROG="HK", INSTERA="era1")  # fmt: skip
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        with pytest.raises(InvalidRecordError, match="SPECTROG"):
            store.register_calibration(FITSCalibration(bad, profile=store.profile))
        assert store.query() == []
        _, record = store.register_calibration(FITSCalibration(good, profile=store.profile))
        assert record["spectrograph"] == "HK"


def test_the_profile_header_map_applies_and_an_explicit_map_wins(tmp_path):
    path = write_fits(tmp_path / "liger.fits", IMAGETYP="DARK", DATE_OBS="2025-03-03T02:00:00",
                      CAMERA="imager", OBSMODE="img", DETNAME="ifs")  # fmt: skip
    assert fits_record(path, profile=LIGER)["detector"] == "imager"
    assert fits_record(path, {"detector": "DETNAME"}, profile=LIGER)["detector"] == "ifs"
    assert "detector" not in fits_record(path)  # without the profile: DETECTOR only


def test_a_profile_without_required_keywords_refuses_nothing(tmp_path):
    path = write_fits(tmp_path / "x.fits", IMAGETYP="DARK", DATE_OBS="2025-03-03T02:00:00")
    assert fits_record(path, profile=load_profile("no_such_instrument"))["cal_type"] == "dark"


@pytest.mark.parametrize("value", ["03/03/25", "25/12/97", "2025/03/03", "Mon, 03 Mar 2025"])
def test_a_date_obs_that_is_not_iso_8601_is_refused_quoting_it(tmp_path, value):
    path = write_fits(tmp_path / "old.fits", IMAGETYP="DARK", DATE_OBS=value, SPECTROG="yJ")
    with pytest.raises(InvalidRecordError) as info:
        fits_record(path)
    message = str(info.value)
    assert f"DATE-OBS {value!r}" in message and "ISO 8601" in message and "old.fits" in message
    assert "1925" not in message and "datetime_obs=" in message
    with pytest.raises(InvalidRecordError, match="ISO 8601"):
        fits_metadata(path)  # a science frame's date is read the same way


def test_an_override_stands_for_a_date_obs_that_is_not_iso(tmp_path):
    path = write_fits(tmp_path / "old.fits", IMAGETYP="DARK", DATE_OBS="03/03/25")
    record = fits_record(path, datetime_obs="2025-03-03T02:00:00")
    assert record["datetime_obs"] == "2025-03-03T02:00:00.000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-03", "2025-03-03T00:00:00.000"),
        ("2025-03-03T02:00:00", "2025-03-03T02:00:00.000"),
        ("2025-03-03T02:00:00.25", "2025-03-03T02:00:00.250"),
        ("2025-03-03T02:00:00Z", "2025-03-03T02:00:00.000"),
    ],
)
def test_iso_8601_dates_are_read(tmp_path, value, expected):
    path = write_fits(tmp_path / "d.fits", IMAGETYP="DARK", DATE_OBS=value)
    assert fits_record(path)["datetime_obs"] == expected

"""FITSCalibration and fits_record on real FITS files written by astropy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from koa_middleware.datamodel_protocol import SupportsCalibrationModelIO
from koa_middleware.errors import InvalidRecordError
from koa_middleware.fits import (
    DEFAULT_HEADER_MAP,
    FITSCalibration,
    fits_record,
)
from support.children import run_child


def write_fits(path: Path, extension: dict | None = None, **cards) -> Path:
    """Write a small FITS file whose primary header holds ``cards``."""
    primary = fits.PrimaryHDU(np.arange(12, dtype=np.float32).reshape(3, 4))
    for key, value in cards.items():
        primary.header[key.replace("_", "-") if key in ("DATE_OBS", "MJD_OBS") else key] = value
    hdus = [primary]
    if extension is not None:
        ext = fits.ImageHDU(np.zeros((2, 2), dtype=np.int16))
        for key, value in extension.items():
            ext.header[key] = value
        hdus.append(ext)
    fits.HDUList(hdus).writeto(path)
    return path


def test_record_from_a_full_header(tmp_path):
    path = write_fits(
        tmp_path / "hispec_dark_a.fits",
        CALTYPE="DARK",
        DATE_OBS="2024-03-05T06:07:08.5",
        MJD_OBS=60374.2549594907,
        SPECTROG="spec_a",
        INSTERA="era1",
        MASTRCAL=True,
        EXPTIME=300.0,
        INSTRUME="HISPEC",
    )
    record = FITSCalibration(path).to_record()
    assert record == {
        "filename": "hispec_dark_a.fits",
        "cal_type": "dark",
        "datetime_obs": "2024-03-05T06:07:08.500",
        "mjd_start": 60374.2549594907,
        "spectrograph": "spec_a",
        "instrument_era": "era1",
        "master_cal": 1,
        "exptime": 300.0,
        "instrument": "HISPEC",
    }


@pytest.mark.parametrize(
    ("cards", "expected"),
    [
        ({"IMAGETYP": "Flat Field"}, "flat"),
        ({"OBSTYPE": "zero"}, "bias"),
        ({"IMAGETYP": "  ARC  "}, "arc"),
        ({"IMAGETYP": "comparison"}, "arc"),
        ({"CALTYPE": "Dark", "IMAGETYP": "OBJECT"}, "dark"),
        ({"OBSTYPE": "Sky Flat"}, "sky flat"),
    ],
)
def test_cal_type_keywords_and_normalization(tmp_path, cards, expected):
    path = write_fits(tmp_path / "c.fits", DATE_OBS="2024-01-01T00:00:00", **cards)
    assert fits_record(path)["cal_type"] == expected


@pytest.mark.parametrize("time_key", ["UTC", "TIME-OBS", "UT"])
def test_date_only_date_obs_is_completed_by_the_time_keyword(tmp_path, time_key):
    path = write_fits(tmp_path / "d.fits", CALTYPE="bias", DATE_OBS="2023-12-31")
    with fits.open(path, mode="update") as hdus:
        hdus[0].header[time_key] = "23:59:30.25"
    record = fits_record(path)
    assert record["datetime_obs"] == "2023-12-31T23:59:30.250"
    expected_mjd = Time("2023-12-31T23:59:30.25", scale="utc").mjd
    assert record["mjd_start"] == pytest.approx(expected_mjd, abs=1e-8)


def test_old_style_date_obs_is_refused_quoting_it(tmp_path):
    # DD/MM/YY names no century: read as 19YY, '03/03/25' would be 1925.
    path = write_fits(tmp_path / "old.fits", CALTYPE="flat", DATE_OBS="25/12/97")
    with pytest.raises(InvalidRecordError, match=r"old\.fits: DATE-OBS '25/12/97' is not an ISO"):
        fits_record(path)
    assert fits_record(path, datetime_obs="1997-12-25")["datetime_obs"] == "1997-12-25T00:00:00.000"


def test_mjd_is_computed_from_datetime_obs(tmp_path):
    path = write_fits(tmp_path / "m.fits", CALTYPE="arc", DATE_OBS="2024-07-01T12:30:00")
    record = fits_record(path)
    assert record["mjd_start"] == pytest.approx(Time("2024-07-01T12:30:00").mjd, abs=1e-8)


def test_datetime_obs_is_computed_from_mjd_when_date_obs_is_missing(tmp_path):
    path = write_fits(tmp_path / "m.fits", CALTYPE="arc", MJD_OBS=60310.25)
    record = fits_record(path)
    assert record["datetime_obs"] == "2024-01-01T06:00:00.000"
    assert record["mjd_start"] == 60310.25


def test_keywords_in_an_extension_header_are_found(tmp_path):
    path = write_fits(
        tmp_path / "ext.fits",
        DATE_OBS="2024-01-02T00:00:00",
        extension={"CALTYPE": "flat", "SPECTROG": "spec_b"},
    )
    record = fits_record(path)
    assert record["cal_type"] == "flat"
    assert record["spectrograph"] == "spec_b"


def test_primary_header_wins_over_extension(tmp_path):
    path = write_fits(
        tmp_path / "ext.fits",
        CALTYPE="dark",
        DATE_OBS="2024-01-02T00:00:00",
        extension={"CALTYPE": "flat"},
    )
    assert fits_record(path)["cal_type"] == "dark"


def test_header_map_changes_keywords_and_removes_fields(tmp_path):
    path = write_fits(
        tmp_path / "h.fits",
        KINDCAL="Dark",
        DATE_OBS="2024-01-01T00:00:00",
        SPECNAME="spec_b",
        SPECTROG="ignored",
        EXPTIME=12.0,
        READMODE="CDS",
    )
    record = fits_record(
        path,
        header_map={
            "cal_type": ["NOPE", "KINDCAL"],
            "spectrograph": "SPECNAME",
            "exptime": None,
            "read_mode": "READMODE",
        },
    )
    assert record["cal_type"] == "dark"
    assert record["spectrograph"] == "spec_b"
    assert "exptime" not in record
    assert record["read_mode"] == "CDS"
    # the module default is untouched
    assert DEFAULT_HEADER_MAP["spectrograph"] == ("SPECTROG", "SPEC")
    assert "exptime" in DEFAULT_HEADER_MAP


def test_header_map_with_a_bad_value_type(tmp_path):
    path = write_fits(tmp_path / "h.fits", CALTYPE="dark", DATE_OBS="2024-01-01")
    with pytest.raises(TypeError, match="header_map"):
        FITSCalibration(path, header_map={"cal_type": 5})


def test_overrides_win_and_datetime_override_recomputes_mjd(tmp_path):
    path = write_fits(
        tmp_path / "o.fits",
        CALTYPE="dark",
        DATE_OBS="2024-01-01T00:00:00",
        MJD_OBS=60310.0,
        SPECTROG="spec_a",
    )
    record = fits_record(
        path, cal_type="FLAT", spectrograph="spec_b", datetime_obs="2024-01-02T00:00:00"
    )
    assert record["cal_type"] == "flat"
    assert record["spectrograph"] == "spec_b"
    assert record["datetime_obs"] == "2024-01-02T00:00:00.000"
    assert record["mjd_start"] == pytest.approx(60311.0)


def test_missing_cal_type_says_which_keyword_or_override(tmp_path):
    path = write_fits(tmp_path / "nocal.fits", DATE_OBS="2024-01-01T00:00:00")
    with pytest.raises(InvalidRecordError) as info:
        FITSCalibration(path).to_record()
    message = str(info.value)
    assert "nocal.fits" in message
    assert "CALTYPE" in message and "IMAGETYP" in message
    assert "cal_type=" in message
    # with the override it works
    assert fits_record(path, cal_type="dark")["cal_type"] == "dark"


def test_missing_date_says_which_keyword_or_override(tmp_path):
    path = write_fits(tmp_path / "nodate.fits", CALTYPE="dark")
    with pytest.raises(InvalidRecordError) as info:
        fits_record(path)
    message = str(info.value)
    assert "datetime_obs" in message and "DATE-OBS" in message and "MJD-OBS" in message


def test_malformed_date_obs_names_the_file(tmp_path):
    path = write_fits(tmp_path / "bad.fits", CALTYPE="dark", DATE_OBS="yesterday evening")
    with pytest.raises(InvalidRecordError, match=r"bad\.fits.*datetime_obs"):
        fits_record(path)


@pytest.mark.parametrize("content", [b"", b"SIMPLE? no, just text\n", b"\x00" * 2880])
def test_non_fits_file_is_refused(tmp_path, content):
    path = tmp_path / "notes.fits"
    path.write_bytes(content)
    with pytest.raises(InvalidRecordError, match="not a readable FITS file"):
        FITSCalibration(path).to_record()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FITSCalibration(tmp_path / "absent.fits")


def test_is_a_calibration_model_and_to_record_is_stable(tmp_path):
    path = write_fits(tmp_path / "s.fits", CALTYPE="dark", DATE_OBS="2024-01-01T00:00:00")
    cal = FITSCalibration(path)
    assert isinstance(cal, SupportsCalibrationModelIO)
    record = cal.to_record()
    assert cal.to_record() is record
    copy = fits_record(path)
    assert copy == record and copy is not record
    assert "s.fits" in repr(cal)


def test_save_copies_the_bytes(tmp_path):
    path = write_fits(tmp_path / "s.fits", CALTYPE="dark", DATE_OBS="2024-01-01T00:00:00")
    cal = FITSCalibration(path)
    out_dir = tmp_path / "out"
    saved = cal.save(output_dir=str(out_dir))
    assert saved == str(out_dir / "s.fits")
    assert Path(saved).read_bytes() == path.read_bytes()
    target = tmp_path / "elsewhere" / "copy.fits"
    assert cal.save(output_path=str(target)) == str(target)
    assert target.read_bytes() == path.read_bytes()
    # both given: output_path wins
    other = tmp_path / "other.fits"
    assert cal.save(output_dir=str(out_dir / "x"), output_path=str(other)) == str(other)
    assert not (out_dir / "x").exists()


def test_save_without_destination_or_onto_itself_keeps_the_file(tmp_path):
    path = write_fits(tmp_path / "s.fits", CALTYPE="dark", DATE_OBS="2024-01-01T00:00:00")
    before = path.read_bytes()
    cal = FITSCalibration(path)
    assert cal.save() == str(path)
    assert cal.save(output_path=str(path)) == str(path)
    assert cal.save(output_dir=str(tmp_path)) == str(path)
    assert path.read_bytes() == before


def test_save_uses_the_record_filename_a_store_set(tmp_path):
    path = write_fits(tmp_path / "s.fits", CALTYPE="dark", DATE_OBS="2024-01-01T00:00:00")
    cal = FITSCalibration(path)
    cal.to_record()["filename"] = "dark_v002.fits"
    saved = cal.save(output_dir=str(tmp_path / "out"))
    assert Path(saved).name == "dark_v002.fits"


def test_traversal_filename_cannot_leave_the_output_dir(tmp_path):
    sentinel = tmp_path / "sentinel.fits"
    sentinel.write_bytes(b"keep me")
    path = write_fits(tmp_path / "s.fits", CALTYPE="dark", DATE_OBS="2024-01-01T00:00:00")
    with pytest.raises(InvalidRecordError, match="file name"):
        fits_record(path, filename="../sentinel.fits")
    cal = FITSCalibration(path, filename="../sentinel.fits")
    out_dir = tmp_path / "out"
    with pytest.raises(InvalidRecordError):
        cal.save(output_dir=str(out_dir))
    assert sentinel.read_bytes() == b"keep me"


def test_bad_override_column_name_is_refused(tmp_path):
    path = write_fits(tmp_path / "s.fits", CALTYPE="dark", DATE_OBS="2024-01-01T00:00:00")
    with pytest.raises(InvalidRecordError, match="column name"):
        fits_record(path, **{"a b": 1})


def test_missing_astropy_gives_the_install_command(tmp_path):
    path = write_fits(tmp_path / "s.fits", CALTYPE="dark", DATE_OBS="2024-01-01T00:00:00")
    result = run_child("fits_record_without_astropy", path, check=True)
    assert "pip install 'koa_middleware[fits]'" in result.stdout


def test_fits_metadata_of_a_science_frame_needs_no_cal_type(tmp_path):
    from koa_middleware.fits import fits_metadata

    path = write_fits(
        tmp_path / "sci.fits", DATE_OBS="2024-01-01", UTC="06:00:00", SPECTROG="spec_b"
    )
    meta = fits_metadata(path)
    assert meta["datetime_obs"] == "2024-01-01T06:00:00.000"
    assert meta["mjd_start"] == pytest.approx(60310.25)
    assert meta["spectrograph"] == "spec_b"
    assert "cal_type" not in meta
    bare = write_fits(tmp_path / "bare.fits")
    assert fits_metadata(bare) == {"filename": "bare.fits"}
    with pytest.raises(FileNotFoundError):
        fits_metadata(tmp_path / "nope.fits")


def test_a_date_without_a_time_warns(tmp_path, caplog):
    path = write_fits(tmp_path / "dark.fits", CALTYPE="DARK", DATE_OBS="2025-03-05")
    with caplog.at_level("WARNING", logger="koa_middleware.fits"):
        record = FITSCalibration(path).to_record()
    assert record["datetime_obs"] == "2025-03-05T00:00:00.000"
    [warning] = [r.getMessage() for r in caplog.records]
    assert "dark.fits" in warning and "no time of day" in warning and "TIME-OBS" in warning


def test_a_date_with_its_time_card_or_an_override_does_not_warn(tmp_path, caplog):
    timed = write_fits(tmp_path / "a.fits", CALTYPE="DARK", DATE_OBS="2025-03-05", UT="06:07:08")
    dated = write_fits(tmp_path / "b.fits", CALTYPE="DARK", DATE_OBS="2025-03-05")
    with caplog.at_level("WARNING", logger="koa_middleware.fits"):
        assert FITSCalibration(timed).to_record()["datetime_obs"] == "2025-03-05T06:07:08.000"
        FITSCalibration(dated, datetime_obs="2025-03-05T03:00:00").to_record()
    assert caplog.records == []

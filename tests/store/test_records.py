"""The record rules shared by the store and the archive."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from koa_middleware.errors import InvalidRecordError
from koa_middleware.records import (
    format_version,
    normalize_bool,
    normalize_timestamp,
    normalize_version,
    safe_path,
    validate_cal_id,
    validate_column_name,
    validate_filename,
    validate_record,
)

GOOD_ID = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"


@pytest.mark.parametrize(
    "name",
    [
        "../x.fits",
        "/etc/passwd",
        "a/b.fits",
        "..",
        ".",
        "",
        "a\\b.fits",
        "a\x00b.fits",
        "x" * 256,
        "tab\there.fits",
        "c1\x85control.fits",  # NEL, a C1 control
        "c1\x9fend.fits",
        "evil\u202egnp.fits",  # right-to-left override: shows as 'evil' + 'png' reversed
        "isolate\u2066x\u2069.fits",
        "embed\u202ax.fits",
    ],
)
def test_bad_file_names_are_refused(name):
    with pytest.raises(InvalidRecordError, match="Invalid file name"):
        validate_filename(name)


def test_255_byte_name_is_accepted_and_256_refused():
    assert validate_filename("é" * 127 + "x") == "é" * 127 + "x"  # 255 bytes
    with pytest.raises(InvalidRecordError):
        validate_filename("é" * 128)  # 256 bytes


@given(st.text(min_size=1, max_size=80))
def test_safe_path_never_leaves_its_folder(tmp_path_factory, name):
    base = tmp_path_factory.getbasetemp() / "cache"
    try:
        path = safe_path(base, name)
    except InvalidRecordError:
        return
    assert path.parent == base.absolute()


@pytest.mark.parametrize("name", ["cal_type; DROP TABLE x", "a b", "1abc", "", "x" * 64, "é"])
def test_bad_column_names_are_refused(name):
    with pytest.raises(InvalidRecordError, match="Invalid column name"):
        validate_column_name(name)


def test_ids_are_uuids_in_lower_case():
    assert validate_cal_id(GOOD_ID.upper()) == GOOD_ID
    for bad in ("abc", "1234", GOOD_ID[:-1] + "g", None, 5):
        with pytest.raises(InvalidRecordError, match="Invalid calibration id"):
            validate_cal_id(bad)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-02-12T03:04:05.123", "2026-02-12T03:04:05.123"),
        ("2026-02-12 03:04:05", "2026-02-12T03:04:05.000"),
        ("2026-02-12T03:04:05Z", "2026-02-12T03:04:05.000"),
        ("2026-02-12T13:04:05+10:00", "2026-02-12T03:04:05.000"),
        ("2026-02-12T03:04:05.123456", "2026-02-12T03:04:05.123"),
        ("Thu, 12 Feb 2026 00:00:00 GMT", "2026-02-12T00:00:00.000"),
    ],
)
def test_timestamps_normalize_to_iso_utc(raw, expected):
    assert normalize_timestamp(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",
        "2026-13-01",
        "12/02/2026",
        "",
        None,
        12,
        # impossible moments in the canonical form itself
        "2025-13-45T99:00:00.000",
        "2025-02-29T00:00:00.000",
        "2025-01-01T24:00:00.000",
        "2025-04-31T00:00:00.000",
        "2025-01-01T00:60:00.000",
    ],
)
def test_malformed_timestamps_are_refused(raw):
    with pytest.raises(InvalidRecordError, match="YYYY-MM-DDTHH:MM:SS.sss"):
        normalize_timestamp(raw)


def test_versions_are_three_digits_and_never_past_999():
    assert normalize_version(7) == "007"
    assert normalize_version("12") == "012"
    assert format_version(999) == "999"
    for bad in (0, 1000, "abc", "000", True):
        with pytest.raises(InvalidRecordError):
            normalize_version(bad)


def test_booleans_arrive_as_words_or_digits():
    assert [normalize_bool(v) for v in (True, "true", "1", 1, "False", 0, "no")] == [
        1,
        1,
        1,
        1,
        0,
        0,
        0,
    ]
    with pytest.raises(InvalidRecordError):
        normalize_bool("maybe")


def test_validate_record_normalizes_and_reports_missing_fields():
    record = validate_record(
        {
            "id": GOOD_ID,
            "filename": "d.fits",
            "cal_type": "dark",
            "datetime_obs": "Thu, 12 Feb 2026 00:00:00 GMT",
            "origin": "keck",
            "master_cal": "true",
            "file_md5": "A" * 32,
        }
    )
    assert record["datetime_obs"] == "2026-02-12T00:00:00.000"
    assert record["origin"] == "KECK"
    assert record["master_cal"] == 1
    assert record["file_md5"] == "a" * 32
    with pytest.raises(InvalidRecordError, match="missing required field.*cal_type"):
        validate_record({"id": GOOD_ID, "filename": "d.fits", "datetime_obs": "2026-02-12"})


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], (1,)])
def test_nested_values_are_refused(value):
    with pytest.raises(InvalidRecordError, match="nested values"):
        validate_record(
            {
                "id": GOOD_ID,
                "filename": "d.fits",
                "cal_type": "dark",
                "datetime_obs": "2026-02-12",
                "extra": value,
            }
        )


def good_record(**extra) -> dict:
    record = {"id": GOOD_ID, "filename": "d.fits", "cal_type": "dark"}
    record.update(datetime_obs="2024-01-01T00:00:00.000", **extra)
    return record


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**70, -(2**100)])
def test_integers_beyond_64_bits_are_refused_by_name(value):
    with pytest.raises(InvalidRecordError, match="'gain'.*64 bits"):
        validate_record(good_record(gain=value))
    with pytest.raises(InvalidRecordError, match="file_size.*64-bit"):
        validate_record(good_record(file_size=abs(value)))


def test_integers_at_the_64_bit_bounds_are_kept():
    record = validate_record(good_record(low=-(2**63), high=2**63 - 1))
    assert (record["low"], record["high"]) == (-(2**63), 2**63 - 1)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_numbers_that_are_not_finite_are_refused(value):
    with pytest.raises(InvalidRecordError, match="'airmass'.*finite"):
        validate_record(good_record(airmass=value))


@pytest.mark.parametrize(
    "extra", [{"EXPTIME": 1, "exptime": 2}, {"Filename": "other.fits"}, {"CAL_TYPE": "flat"}]
)
def test_fields_that_differ_only_by_case_are_refused(extra):
    with pytest.raises(InvalidRecordError, match="differ only by case"):
        validate_record(good_record(**extra))


@pytest.mark.parametrize("tail", ["\n", "\r\n", " "])
def test_a_trailing_newline_is_not_part_of_a_valid_id_column_or_md5(tail):
    """``$`` would match before a final newline: each rule must see the whole value."""
    from koa_middleware.records import validate_md5

    with pytest.raises(InvalidRecordError):
        validate_cal_id(GOOD_ID + tail)
    with pytest.raises(InvalidRecordError):
        validate_column_name("spectrograph" + tail)
    with pytest.raises(InvalidRecordError):
        validate_md5("0" * 32 + tail)
    record = {"filename": "d.fits", "cal_type": "dark", "datetime_obs": "2024-01-01T00:00:00"}
    with pytest.raises(InvalidRecordError):
        validate_record({**record, "id": GOOD_ID + tail})

"""koa_middleware.utils gives the results of the original koa_middleware.utils.

Every expected value below is a literal taken from the original implementation
(oirlab/KOA_Middleware, commit 4d1810a, koa_middleware/utils.py), run side by
side with ours on the same inputs: the documented examples, edge cases (case,
UUID versions, trailing newlines, HTTP-dates, 'Z', offsets, rounding and
truncation of fractions) and random values.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction

import pytest

from koa_middleware import utils
from koa_middleware.utils import (
    datetime_to_isot_ms,
    generate_koa_filehandle,
    generate_md5_file,
    get_env_var_bool,
    get_koa_id_timestamp_from_datetime,
    is_valid_uuid,
    isot_to_mjd,
    mjd_to_isot_ms,
    postgres_http_date_to_iso,
)

UUID = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"

# (value, the original's result)
UUID_CASES = [
    (UUID, True),
    (UUID.upper(), True),
    ("1b4e28ba-2fa1-4D2B-883f-0016d3cca427", True),
    ("d1f6f86c-029a-4245-bb91-433a6aa79987", True),
    ("D1F6F86C-029A-4245-BB91-433A6AA79987", True),
    ("00000000-0000-4000-8000-000000000000", True),
    ("ffffffff-ffff-4fff-bfff-ffffffffffff", True),
    ("1b4e28ba-2fa1-4d2b-983f-0016d3cca427", True),
    ("1b4e28ba-2fa1-4d2b-a83f-0016d3cca427", True),
    ("1b4e28ba-2fa1-4d2b-B83f-0016d3cca427", True),
    # other versions (1, 3, 5) and variants are not valid
    ("6ba7b810-9dad-11d1-80b4-00c04fd430c8", False),
    ("6BA7B810-9DAD-11D1-80B4-00C04FD430C8", False),
    ("131a6034-56b6-1d24-ae97-e332b13fb0d8", False),
    ("736e8e83-f550-10ce-8a35-b61875a4a698", False),
    ("343a6f02-930a-15f9-b645-f04bbb62f10c", False),
    ("1b4e28ba-2fa1-5d2b-883f-0016d3cca427", False),
    ("1b4e28ba-2fa1-4d2b-c83f-0016d3cca427", False),
    ("1b4e28ba-2fa1-4d2b-783f-0016d3cca427", False),
    # nothing before or after, no other spellings
    (UUID + "\n", False),
    (UUID + "\r\n", False),
    (UUID + " ", False),
    (" " + UUID, False),
    ("\n" + UUID, False),
    (UUID[:-1], False),
    (UUID + "0", False),
    (UUID.replace("-", ""), False),
    ("{" + UUID + "}", False),
    ("urn:uuid:" + UUID, False),
    ("1b4e28bg-2fg1-4d2b-883f-0016d3ccg427", False),
    ("", False),
    ("not-a-uuid", False),
]

# (environment value, default, the original's result)
ENV_CASES = [
    (value, default, expected)
    for value, expected in [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("tRuE", True),
        ("yes", True),
        ("YES", True),
        ("on", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
        ("", False),
        (" ", False),
        (" true", False),
        ("true ", False),
        ("true\n", False),
        ("2", False),
        ("-1", False),
        ("y", False),
        ("t", False),
        ("enabled", False),
        ("01", False),
        ("1.0", False),
        ("oui", False),
        ("\uff34\uff32\uff35\uff25", False),  # full-width TRUE
        ("none", False),
    ]
    for default in (None, True, False, "x")
]

# (file contents, the original's result)
MD5_CASES = [
    (b"", "d41d8cd98f00b204e9800998ecf8427e"),
    (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
    (b"\x00" * 10, "a63c90cc3684ad8b0a2176a6a8fe9005"),
    (bytes(range(256)) * 4100, "269deb894a0d53debeb64c8ef8501e92"),
    (b"x" * (1 << 20), "b561f87202d04959e37588ee05cf5b10"),
    (b"y" * ((1 << 20) + 1), "eedae96c2d322c34445cde52a8d7f6aa"),
]

# (observation time, the original's result)
KOA_TIMESTAMP_CASES = [
    ("2024-09-24T12:34:56.780", "20240924.45296.78"),
    ("2024-09-24T00:00:00.000", "20240924.00000.00"),
    ("2024-09-24T23:59:59.999", "20240924.86400.00"),
    ("2024-09-24T23:59:59.995", "20240924.86399.99"),
    ("2024-09-24T23:59:59.994999", "20240924.86399.99"),
    ("2024-09-24T00:00:00.005", "20240924.00000.01"),
    ("2024-09-24T00:00:00.015", "20240924.00000.01"),
    ("2024-09-24T00:00:00.125", "20240924.00000.12"),
    ("2024-09-24T00:00:01.5", "20240924.00001.50"),
    ("2024-09-24T00:00:01.123456", "20240924.00001.12"),
    ("2024-9-4T1:2:3.4", "20240904.03723.40"),
    ("2024-02-29T10:00:00.5", "20240229.36000.50"),
    ("9999-12-31T23:59:59.999999", "99991231.86400.00"),
    ("2029-11-18T07:23:38.931649", "20291118.26618.93"),
    ("2037-10-03T16:39:01.65500", "20371003.59941.65"),
    ("2014-01-31T01:41:58.085000", "20140131.06118.09"),
    ("2000-02-14T04:53:59.355000", "20000214.17639.35"),
    ("2039-01-06T22:09:23.085000", "20390106.79763.09"),
    ("2003-04-24T08:43:34.003010", "20030424.31414.00"),
    ("2000-06-25T22:59:03.038", "20000625.82743.04"),
    ("2017-09-30T16:29:14.355", "20170930.59354.36"),
    ("2035-03-15T07:08:00.545", "20350315.25680.54"),
]

# Times the original refuses with ValueError.
KOA_TIMESTAMP_REFUSED = [
    "2024-09-24T00:00:01.1234567",
    "2024-09-24T00:00:01",
    "2024-09-24T00:00:01.000Z",
    "2024-09-24T00:00:01.000+00:00",
    "2024-09-24 00:00:01.000",
    " 2024-09-24T00:00:01.000",
    "2024-09-24T12:34:56.780\n",
    "2023-02-29T10:00:00.5",
    "2024-09-24T24:00:00.000",
    "2024-09-24T12:34:60.000",
    "2024-09-24T12:34:56.",
    "",
    "garbage",
]

# (instrument, observation time, KOA id, the original's result)
FILEHANDLE_CASES = [
    (
        "HISPEC",
        "2024-09-24T12:34:56.780",
        "HB.20240924.45296.78.fits",
        "/HISPEC/2024/20240924/HB.20240924.45296.78.fits",
    ),
    ("PARVI", "2025-01-01", "X", "/PARVI/2025/20250101/X"),
    (
        "KPF",
        "2025-12-31T23:59:59Z",
        "KP.20251231.86399.00.fits",
        "/KPF/2025/20251231/KP.20251231.86399.00.fits",
    ),
    ("hispec", "2024-09-24 12:00:00", "id", "/hispec/2024/20240924/id"),
    ("", "2024-09-24T00:00:00.000", "", "//2024/20240924/"),
]

# (time, the original's result)
HTTP_DATE_CASES = [
    ("Thu, 12 Feb 2026 00:00:00 GMT", "2026-02-12T00:00:00.000"),
    ("Thu, 12 Feb 2026 23:59:59 GMT", "2026-02-12T23:59:59.000"),
    ("Mon, 01 Jan 2024 12:34:56 GMT", "2024-01-01T12:34:56.000"),
    ("Fri, 12 Feb 2026 00:00:00 GMT", "2026-02-12T00:00:00.000"),  # the weekday is not checked
    ("thu, 12 feb 2026 00:00:00 gmt", "2026-02-12T00:00:00.000"),
    ("Thu, 2 Feb 2026 1:2:3 GMT", "2026-02-02T01:02:03.000"),
    ("Thu,  12 Feb 2026 00:00:00 GMT", "2026-02-12T00:00:00.000"),
    ("Mon, 28 Dec 2020 00:51:36 GMT", "2020-12-28T00:51:36.000"),
    ("Tue, 23 Nov 2038 02:09:40 GMT", "2038-11-23T02:09:40.000"),
    ("2026-02-12T03:04:05.678901+02:00", "2026-02-12T01:04:05.678"),
    ("2026-02-12T03:04:05Z", "2026-02-12T03:04:05.000"),
    ("2026-02-12T03:04:05.999999Z", "2026-02-12T03:04:05.999"),
    ("2026-02-12T03:04:05.9999999Z", "2026-02-12T03:04:05.999"),
    ("2026-02-12T03:04:05.1Z", "2026-02-12T03:04:05.100"),
    ("2026-02-12T03:04:05.12345Z", "2026-02-12T03:04:05.123"),
    ("2026-02-12T03:04:05 Z", "2026-02-12T03:04:05.000"),
    ("2026-02-12", "2026-02-12T00:00:00.000"),
    ("2026-02-12T03", "2026-02-12T03:00:00.000"),
    ("2026-02-12T03:04", "2026-02-12T03:04:00.000"),
    ("2026-02-12 03:04:05", "2026-02-12T03:04:05.000"),
    ("20260212T030405", "2026-02-12T03:04:05.000"),
    ("2026-02-12T030405", "2026-02-12T03:04:05.000"),
    ("2026-W07-4", "2026-02-12T00:00:00.000"),
    ("2026-02-12T03:04:05-10:00", "2026-02-12T13:04:05.000"),
    ("2026-02-12T23:04:05-10:00", "2026-02-13T09:04:05.000"),
    ("2026-02-12T03:04:05+14:00", "2026-02-11T13:04:05.000"),
    ("2026-02-12T03:04:05+05:30", "2026-02-11T21:34:05.000"),
    ("2026-02-12T03:04:05+00:00:30", "2026-02-12T03:03:35.000"),
    ("2026-02-12T03:04:05.000+0000", "2026-02-12T03:04:05.000"),
    ("2026-02-12T03:04:05.000", "2026-02-12T03:04:05.000"),
    ("9999-12-31T23:59:59.999999", "9999-12-31T23:59:59.999"),
    ("2013-01-08T13:38:12.040938Z", "2013-01-08T13:38:12.040"),
    ("2037-09-19 17:23:00.393016", "2037-09-19T17:23:00.393"),
    ("2017-11-23T19:34:38.055723-08:45", "2017-11-24T04:19:38.055"),
    ("2008-04-05T17:47:22.205055+07:45", "2008-04-05T10:02:22.205"),
    ("2025-02-26T18:24:01.507310-12:00", "2025-02-27T06:24:01.507"),
]

# Times the original refuses with ValueError.
HTTP_DATE_REFUSED = [
    "Thursday, 12 February 2026 00:00:00 GMT",
    "Thu, 12 Feb 2026 00:00:00 UTC",
    "Thu, 12 Feb 2026 00:00:00 +0000",
    "12 Feb 2026 00:00:00 GMT",
    "Thu, 12 Feb 2026 00:00:00 GMT\n",
    " Thu, 12 Feb 2026 00:00:00 GMT",
    "Thu, 12 Feb 26 00:00:00 GMT",
    "Thu, 29 Feb 2025 00:00:00 GMT",
    "Thu, 12 Feb 2026 24:00:00 GMT",
    "2026-02-12T03:04:05z",
    "2026-02-12T03:04:05ZZ",
    "2026-02-12T03:04:05.000\n",
    " 2026-02-12T03:04:05",
    "2026-043",
    "",
    "garbage",
]

# (time, the original's result)
ISOT_TO_MJD_CASES = [
    ("2024-01-01T12:00:00.000", 60310.5),
    ("1970-01-01T00:00:00", 40587.0),
    ("1858-11-17T00:00:00", 0.0),
    ("2000-01-01T12:00:00", 51544.5),
    ("2024-01-01T14:00:00+02:00", 60310.5),
    ("2024-01-01T12:00:00Z", 60310.5),
    ("2024-01-01T12:00:00-12:00", 60311.0),
    ("2024-01-01T12:00:00.123456Z", 60310.50000142889),
    ("2024-01-01", 60310.0),
    ("2024-01-01 12:00:00", 60310.5),
    ("20240101T120000", 60310.5),
    ("2025-06-30T23:59:59.999", 60856.99999998843),
    ("1969-12-31T23:59:59.999999", 40586.999999999985),
    ("9999-12-31T23:59:59.999999", 2973484.0),
    ("2018-09-10T08:26:48.465443+05:30", 58371.12278316484),
    ("1990-02-01T01:25:05.807+11:30", 47922.57992832176),
    ("1959-10-30T03:15:54.137+12:00", 36870.636043252314),
    ("1978-03-09T04:53:32.814000", 43576.20385201389),
    ("2011-10-26T21:04:02", 55860.877800925926),
    ("2032-11-30T17:21:58.357", 63566.72359209491),
    ("2035-03-23T09:43:08.967000-11:30", 64409.8841315625),
    ("2000-02-07T18:20:04.397000", 51581.763939780096),
    ("1968-09-13T14:23:18.478000", 40112.599519421296),
    ("2011-03-30T22:07:47.314", 55650.922075393515),
]

# (MJD, the original's result)
MJD_TO_ISOT_CASES = [
    (60310.5, "2024-01-01T12:00:00.000"),
    (40587, "1970-01-01T00:00:00.000"),
    (40587.0, "1970-01-01T00:00:00.000"),
    (0, "1858-11-17T00:00:00.000"),
    (51544.5, "2000-01-01T12:00:00.000"),
    (2973483, "9999-12-31T00:00:00.000"),
    (60000.123456789, "2023-02-25T02:57:46.666"),
    (60310.999999999, "2024-01-01T23:59:59.999"),
    (60310.99999999999, "2024-01-01T23:59:59.999"),
    (Fraction(120621, 2), "2024-01-01T12:00:00.000"),
    (62774.14716095253, "2030-09-30T03:31:54.706"),
    (2141966.4120307267, "7723-05-20T09:53:19.454"),
    (63451.42901703488, "2032-08-07T10:17:47.071"),
    (50693.009520349224, "1997-09-02T00:13:42.558"),
    (-147577.1631491551, "1454-10-28T20:05:03.913"),
    (57403.65466917302, "2016-01-16T15:42:43.416"),
    (43423.10319423117, "1977-10-07T02:28:35.981"),
    (-27973.021261787624, "1782-04-15T23:29:22.981"),
]

# (time, the original's result of mjd_to_isot_ms(isot_to_mjd(time))): most come back
# unchanged, some one millisecond early (an MJD float holds about 10 microseconds).
ROUND_TRIP_CASES = [
    ("2014-08-01T00:08:30.775", "2014-08-01T00:08:30.775"),
    ("1990-07-02T04:34:57.880", "1990-07-02T04:34:57.880"),
    ("2006-08-09T12:44:51.888", "2006-08-09T12:44:51.888"),
    ("2000-12-22T21:36:19.303", "2000-12-22T21:36:19.303"),
    ("2019-07-04T07:02:39.490", "2019-07-04T07:02:39.490"),
    ("2034-09-14T19:58:28.533", "2034-09-14T19:58:28.533"),
    ("2034-03-25T05:05:28.313", "2034-03-25T05:05:28.312"),
    ("2035-06-06T06:02:06.241", "2035-06-06T06:02:06.240"),
    ("2018-12-20T15:11:05.070", "2018-12-20T15:11:05.069"),
    ("2023-03-16T22:56:13.797", "2023-03-16T22:56:13.796"),
    ("2026-04-02T15:37:40.847", "2026-04-02T15:37:40.846"),
    ("2022-11-21T20:47:55.530", "2022-11-21T20:47:55.529"),
]

_UTC_MINUS_2_30 = timezone(timedelta(hours=-2, minutes=-30))

# (datetime, the original's result): no zone conversion, truncated to milliseconds.
DATETIME_CASES = [
    (datetime(2024, 1, 1, 12, 0, 0, 999999, tzinfo=UTC), "2024-01-01T12:00:00.999"),
    (datetime(2024, 1, 1), "2024-01-01T00:00:00.000"),
    (datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=5))), "2024-01-01T00:00:00.000"),
    (datetime(9999, 12, 31, 23, 59, 59, 999999), "9999-12-31T23:59:59.999"),
    (datetime(2024, 1, 1, 0, 0, 0, 500), "2024-01-01T00:00:00.000"),
    (datetime(2024, 1, 1, 0, 0, 0, 1500), "2024-01-01T00:00:00.001"),
    (datetime(1983, 1, 12, 0, 35, 10, 797205), "1983-01-12T00:35:10.797"),
    (datetime(2001, 12, 13, 12, 17, 51, 520778), "2001-12-13T12:17:51.520"),
    (datetime(1972, 8, 5, 12, 10, 43, 40965), "1972-08-05T12:10:43.040"),
    (datetime(1968, 3, 8, 5, 51, 32, 342353, tzinfo=_UTC_MINUS_2_30), "1968-03-08T05:51:32.342"),
    (date(2024, 1, 1), "2024-01-01T00:00:00.000"),
]


@pytest.mark.parametrize("value, expected", UUID_CASES)
def test_is_valid_uuid(value, expected):
    assert is_valid_uuid(value) is expected


@pytest.mark.parametrize("value", [None, 123, UUID.encode()])
def test_is_valid_uuid_wants_a_str(value):
    with pytest.raises(TypeError, match="must be a str"):
        is_valid_uuid(value)


@pytest.mark.parametrize("value, default, expected", ENV_CASES)
def test_get_env_var_bool(monkeypatch, value, default, expected):
    monkeypatch.setenv("KOA_COMPAT_FLAG", value)
    assert get_env_var_bool("KOA_COMPAT_FLAG", default) is expected
    assert get_env_var_bool("KOA_COMPAT_FLAG") is expected


@pytest.mark.parametrize("default", [None, True, False, 0, "x"])
def test_get_env_var_bool_returns_the_default_when_unset(monkeypatch, default):
    monkeypatch.delenv("KOA_COMPAT_FLAG", raising=False)
    assert get_env_var_bool("KOA_COMPAT_FLAG", default) is default
    assert get_env_var_bool("KOA_COMPAT_FLAG") is None


def test_get_env_var_bool_wants_a_str_name():
    with pytest.raises(TypeError, match="name must be a str"):
        get_env_var_bool(123)


@pytest.mark.parametrize("contents, expected", MD5_CASES)
def test_generate_md5_file(tmp_path, contents, expected):
    path = tmp_path / "calibration.fits"
    path.write_bytes(contents)
    assert generate_md5_file(str(path)) == expected
    assert generate_md5_file(path) == expected


def test_generate_md5_file_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        generate_md5_file(str(tmp_path / "missing.fits"))


@pytest.mark.parametrize("dt, expected", KOA_TIMESTAMP_CASES)
def test_get_koa_id_timestamp_from_datetime(dt, expected):
    assert get_koa_id_timestamp_from_datetime(dt) == expected


@pytest.mark.parametrize("dt", KOA_TIMESTAMP_REFUSED)
def test_get_koa_id_timestamp_from_datetime_refuses(dt):
    with pytest.raises(ValueError, match=re.escape("expected 'YYYY-MM-DDTHH:MM:SS.f'")):
        get_koa_id_timestamp_from_datetime(dt)


@pytest.mark.parametrize("dt", [None, 5, datetime(2024, 1, 1)])
def test_get_koa_id_timestamp_from_datetime_wants_a_str(dt):
    with pytest.raises(TypeError, match="must be a str"):
        get_koa_id_timestamp_from_datetime(dt)


@pytest.mark.parametrize("instrument, datetime_obs, koa_id, expected", FILEHANDLE_CASES)
def test_generate_koa_filehandle(instrument, datetime_obs, koa_id, expected):
    assert generate_koa_filehandle(instrument, datetime_obs, koa_id) == expected


def test_filehandle_of_the_documented_example():
    # The original's own test: a KOA id built from the observation time.
    datetime_obs = "2024-09-24T12:34:56.780"
    koa_id = f"HB.{get_koa_id_timestamp_from_datetime(datetime_obs)}.fits"
    assert generate_koa_filehandle("HISPEC", datetime_obs, koa_id) == (
        "/HISPEC/2024/20240924/HB.20240924.45296.78.fits"
    )


def test_generate_koa_filehandle_takes_a_compact_date_as_the_original_does():
    assert generate_koa_filehandle("HISPEC", "20240924", "x") == "/HISPEC/2024/20240924/x"


@pytest.mark.parametrize(
    "datetime_obs", ["", "2024", "garbage", "20240924T000000", "24-09-24", "202409240"]
)
def test_generate_koa_filehandle_wants_a_date(datetime_obs):
    # The original slices whatever it gets ('/HISPEC/garb/garbage/k'); we say what we expect.
    with pytest.raises(ValueError, match="expected a time starting with 'YYYY-MM-DD'"):
        generate_koa_filehandle("HISPEC", datetime_obs, "k")


def test_generate_koa_filehandle_wants_strs():
    with pytest.raises(TypeError, match="datetime_obs must be a str"):
        generate_koa_filehandle("HISPEC", datetime(2024, 9, 24), "k")
    with pytest.raises(TypeError, match="koa_id must be a str"):
        generate_koa_filehandle("HISPEC", "2024-09-24", 5)


@pytest.mark.parametrize("date_str, expected", HTTP_DATE_CASES)
def test_postgres_http_date_to_iso(date_str, expected):
    assert postgres_http_date_to_iso(date_str) == expected


@pytest.mark.parametrize("date_str", HTTP_DATE_REFUSED)
def test_postgres_http_date_to_iso_refuses(date_str):
    with pytest.raises(ValueError, match="Invalid datetime string: .*expected ISO 8601"):
        postgres_http_date_to_iso(date_str)


def test_postgres_http_date_to_iso_wants_a_str():
    with pytest.raises(TypeError, match="must be a str"):
        postgres_http_date_to_iso(None)


@pytest.mark.parametrize("isot, expected", ISOT_TO_MJD_CASES)
def test_isot_to_mjd(isot, expected):
    assert isot_to_mjd(isot) == expected


@pytest.mark.parametrize("isot", ["", "garbage", "2024-01-01T12:00:00\n"])
def test_isot_to_mjd_refuses(isot):
    with pytest.raises(ValueError, match="Invalid ISO 8601 time"):
        isot_to_mjd(isot)


@pytest.mark.parametrize("isot", [None, 5, datetime(2024, 1, 1)])
def test_isot_to_mjd_wants_a_str(isot):
    with pytest.raises(TypeError, match="must be a str"):
        isot_to_mjd(isot)


@pytest.mark.parametrize("mjd, expected", MJD_TO_ISOT_CASES)
def test_mjd_to_isot_ms(mjd, expected):
    assert mjd_to_isot_ms(mjd) == expected


@pytest.mark.parametrize("isot, expected", ROUND_TRIP_CASES)
def test_mjd_round_trip(isot, expected):
    assert mjd_to_isot_ms(isot_to_mjd(isot)) == expected


@pytest.mark.parametrize(
    "mjd, error",
    [
        (float("nan"), ValueError),
        (float("inf"), OverflowError),
        (float("-inf"), OverflowError),
        (1e300, OverflowError),
        (-678576, OverflowError),
        (2973484, OverflowError),
    ],
)
def test_mjd_to_isot_ms_out_of_range(mjd, error):
    # The original raises the same error types for these.
    with pytest.raises(error, match="mjd|MJD"):
        mjd_to_isot_ms(mjd)


def test_mjd_to_isot_ms_takes_a_numpy_0d_array():
    np = pytest.importorskip("numpy")
    assert mjd_to_isot_ms(np.array(60310.5)) == "2024-01-01T12:00:00.000"


@pytest.mark.parametrize("mjd", [None, "60310.5", b"60310.5", [1], object()])
def test_mjd_to_isot_ms_wants_a_number(mjd):
    with pytest.raises(TypeError, match="must be a real number"):
        mjd_to_isot_ms(mjd)


@pytest.mark.parametrize("dt, expected", DATETIME_CASES)
def test_datetime_to_isot_ms(dt, expected):
    assert datetime_to_isot_ms(dt) == expected


@pytest.mark.parametrize("dt", [None, "2024-01-01T00:00:00", 5])
def test_datetime_to_isot_ms_wants_a_datetime(dt):
    with pytest.raises(TypeError, match="must be a datetime"):
        datetime_to_isot_ms(dt)


def test_the_module_namespace_keeps_its_other_names():
    # The original module also carried these; code may reach them through it.
    assert utils.datetime is datetime
    assert utils.timezone is timezone
    assert utils.timedelta is timedelta
    assert utils.hashlib is hashlib
    assert utils.os is os
    assert utils.re is re

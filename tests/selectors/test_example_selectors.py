"""NearestInTimeSelector, LatestVersionSelector and explain() against a real SQLite database."""

from __future__ import annotations

import json
import uuid

import pytest

from koa_middleware.database.local_database import LocalCalibrationDB
from koa_middleware.errors import InvalidRecordError
from koa_middleware.selectors import LatestVersionSelector, NearestInTimeSelector

FRAME = {"datetime_obs": "2024-01-05T02:00:00", "spectrograph": "spec_a", "instrument_era": "era1"}


def rec(filename, cal_type, when, spec="spec_a", era="era1", version="001", **extra):
    record = {
        "id": str(uuid.uuid4()),
        "filename": filename,
        "cal_type": cal_type,
        "datetime_obs": when,
        "spectrograph": spec,
        "instrument_era": era,
        "cal_version": version,
        "origin": "KECK",
        "master_cal": 1,
        "last_updated": "2024-02-01T00:00:00",
    }
    record.update(extra)
    return record


@pytest.fixture
def db(tmp_path):
    database = LocalCalibrationDB(tmp_path / "hispec_calibrations.db", "hispec")
    database.add(
        [
            # darks for spec_a/era1 on several nights; two versions on Jan 4
            rec("d_a_0101.fits", "dark", "2024-01-01T00:00:00", mjd_start=60310.0),
            rec("d_a_0104_v1.fits", "dark", "2024-01-04T00:00:00", mjd_start=60313.0),
            rec("d_a_0104_v2.fits", "dark", "2024-01-04T00:00:00", version="002",
                mjd_start=60313.0),
            rec("d_a_0108.fits", "dark", "2024-01-08T00:00:00", mjd_start=60317.0),
            # a closer dark, but for the other spectrograph / era / not master / other origin
            rec("d_b_0105.fits", "dark", "2024-01-05T02:00:00", spec="spec_b", mjd_start=60314.08),
            rec("d_a2_0105.fits", "dark", "2024-01-05T02:00:00", era="era2", mjd_start=60314.08),
            rec("d_a_raw_0105.fits", "dark", "2024-01-05T01:00:00", master_cal=0,
                mjd_start=60314.04),
            rec("d_a_local_0105.fits", "dark", "2024-01-05T03:00:00", origin="LOCAL",
                mjd_start=60314.125),
            # flats: versions 1-3 on Jan 2, version 1 on Jan 5 (nearest)
            rec("f_a_0102_v1.fits", "flat", "2024-01-02T00:00:00", mjd_start=60311.0),
            rec("f_a_0102_v2.fits", "flat", "2024-01-02T00:00:00", version="002",
                mjd_start=60311.0),
            rec("f_a_0102_v3.fits", "flat", "2024-01-02T00:00:00", version="003",
                mjd_start=60311.0),
            rec("f_a_0105_v1.fits", "flat", "2024-01-05T00:00:00", mjd_start=60314.0),
            # an arc without mjd_start: the time comes from datetime_obs
            rec("a_a_0106.fits", "arc", "2024-01-06T00:00:00"),
            rec("a_a_0110.fits", "arc", "2024-01-10T00:00:00"),
        ]
    )  # fmt: skip
    yield database
    database.close()


def test_nearest_in_time_within_matching_columns(db):
    dark = NearestInTimeSelector("dark", master_only=True, origin="KECK")
    chosen = dark.select(FRAME, db)
    # Jan 4 (1.08 d before) beats Jan 8; the closer darks differ in spec/era/master/origin
    assert chosen["filename"] == "d_a_0104_v2.fits"  # the highest version of the tie


def test_without_restrictions_the_closest_dark_of_any_master_or_origin_wins(db):
    chosen = NearestInTimeSelector("dark").select(FRAME, db)
    assert chosen["filename"] in ("d_a_raw_0105.fits", "d_a_local_0105.fits")
    assert chosen["spectrograph"] == "spec_a" and chosen["instrument_era"] == "era1"


def test_max_days_excludes_far_calibrations(db):
    frame = dict(FRAME, datetime_obs="2024-01-12T00:00:00")
    assert NearestInTimeSelector("dark", max_days=2, master_only=True).select(frame, db) is None
    chosen = NearestInTimeSelector("dark", max_days=5, master_only=True).select(frame, db)
    assert chosen["filename"] == "d_a_0108.fits"


def test_records_without_mjd_use_datetime_obs(db):
    frame = dict(FRAME, datetime_obs="2024-01-09T06:00:00")
    assert NearestInTimeSelector("arc").select(frame, db)["filename"] == "a_a_0110.fits"


def test_latest_version_within_the_validity_window(db):
    flat = LatestVersionSelector("flat", validity_days=4)
    # Jan 2 v003 is within 4 d of Jan 5 and outranks the nearer Jan 5 v001
    assert flat.select(FRAME, db)["filename"] == "f_a_0102_v3.fits"
    narrow = LatestVersionSelector("flat", validity_days=1)
    assert narrow.select(FRAME, db)["filename"] == "f_a_0105_v1.fits"
    far = dict(FRAME, datetime_obs="2024-02-01T00:00:00")
    assert narrow.select(far, db) is None


def test_latest_version_ties_go_to_the_nearest(db):
    db.add(rec("f_a_0106_v3.fits", "flat", "2024-01-06T00:00:00", version="003",
               mjd_start=60315.0))  # fmt: skip
    flat = LatestVersionSelector("flat", validity_days=4)
    assert flat.select(FRAME, db)["filename"] == "f_a_0106_v3.fits"


def test_options_given_as_strings_like_the_command_line(db):
    dark = NearestInTimeSelector(
        "DARK",
        match="spectrograph, instrument_era",
        max_days="3",
        master_only="yes",
        origin="keck",
    )
    assert dark.match == ("spectrograph", "instrument_era")
    assert dark.max_days == 3.0 and dark.master_only is True and dark.cal_type == "dark"
    assert dark.origin == "KECK"
    assert dark.select(FRAME, db)["filename"] == "d_a_0104_v2.fits"
    assert LatestVersionSelector("flat", validity_days="4", match="").match == ()


@pytest.mark.parametrize("bad", ["-1", "abc", -2])
def test_bad_day_options(bad):
    with pytest.raises(InvalidRecordError, match="days"):
        NearestInTimeSelector("dark", max_days=bad)
    with pytest.raises(InvalidRecordError, match="days"):
        LatestVersionSelector("dark", validity_days=bad)


def test_bad_column_names_never_reach_sql(db):
    with pytest.raises(InvalidRecordError, match="column name"):
        NearestInTimeSelector("dark", match=("cal_type; DROP TABLE hispec",))
    with pytest.raises(InvalidRecordError, match="column name"):
        NearestInTimeSelector("dark", match="a b")
    before = len(db)
    hostile = dict(FRAME, spectrograph="spec_a' OR 1=1 --")
    assert NearestInTimeSelector("dark").select(hostile, db) is None
    assert len(db) == before


def test_frame_without_a_matched_value_or_time(db):
    with pytest.raises(InvalidRecordError, match="spectrograph"):
        NearestInTimeSelector("dark").select({"datetime_obs": "2024-01-01"}, db)
    with pytest.raises(InvalidRecordError, match="observation time"):
        NearestInTimeSelector("dark").select({"spectrograph": "a", "instrument_era": "b"}, db)
    with pytest.raises(InvalidRecordError, match="datetime_obs"):
        NearestInTimeSelector("dark").select(dict(FRAME, datetime_obs="soon"), db)
    with pytest.raises(TypeError, match="FITS"):
        NearestInTimeSelector("dark").select(42, db)


def test_a_match_column_missing_from_the_database_matches_nothing(db):
    dark = NearestInTimeSelector("dark", match=("spectrograph", "detector"))
    frame = dict(FRAME, detector="H4RG")
    assert dark.select(frame, db) is None
    report = dark.explain(frame, db)
    assert (
        "detector = 'H4RG' (no such column in the database)"
        == report["eliminated_by"]["eliminated_by"]
    )


def test_explain_lists_every_candidate_and_why(db):
    dark = NearestInTimeSelector("dark", max_days=10, master_only=True, origin="KECK")
    report = dark.explain(FRAME, db)
    json.dumps(report)  # pipelines log it
    names = [c["filename"] for c in report["candidates"]]
    assert names == ["d_a_0104_v2.fits", "d_a_0104_v1.fits", "d_a_0108.fits", "d_a_0101.fits"]
    assert report["candidates_total"] == 4
    assert report["chosen"] == dark.select(FRAME, db)
    assert [c["chosen"] for c in report["candidates"]] == [True, False, False, False]
    assert [c["rank"] for c in report["candidates"]] == [1, 2, 3, 4]
    first = report["candidates"][0]
    assert first["matched"] == {"spectrograph": "spec_a", "instrument_era": "era1", "master_cal": 1}
    assert first["time_distance_days"] == pytest.approx(60313.0 - 60314.083333, abs=1e-5)
    assert report["candidates"][2]["time_distance_days"] > 0  # after the frame
    assert report["candidates"][3]["time_distance_days"] < 0
    assert "nearest in time: 26.0 h before the frame, version 002" in report["reason"]
    assert "among 4 candidate(s)" in report["reason"]
    assert report["eliminated_by"] is None and report["fallback"] is False
    assert report["selector"] == "koa_middleware.selectors:NearestInTimeSelector"
    assert report["options"]["max_days"] == 10 and report["input"]["spectrograph"] == "spec_a"


def test_explain_of_latest_version(db):
    report = LatestVersionSelector("flat", validity_days=4).explain(FRAME, db)
    assert [c["cal_version"] for c in report["candidates"]] == ["003", "002", "001", "001"]
    assert report["reason"].startswith("latest version 003 within 4 d (3.1 d before the frame)")


@pytest.mark.parametrize(
    ("selector", "frame", "culprit", "before"),
    [
        (NearestInTimeSelector("dark", master_only=True), dict(FRAME, instrument_era="era9"),
         "instrument_era = 'era9'", 7),
        (NearestInTimeSelector("bias"), FRAME, "cal_type = 'bias'", 14),
        (NearestInTimeSelector("dark", max_days=0.5, master_only=True, origin="KECK"), FRAME,
         "within 0.5 d of the frame", 4),
        (LatestVersionSelector("flat", validity_days=2), dict(FRAME, spectrograph="spec_b"),
         "spectrograph = 'spec_b'", 4),
    ],
)  # fmt: skip
def test_an_empty_result_says_which_condition_eliminated_the_last_candidates(
    db, selector, frame, culprit, before
):
    assert selector.select(frame, db) is None
    report = selector.explain(frame, db)
    assert report["chosen"] is None and report["candidates"] == []
    eliminated = report["eliminated_by"]
    assert eliminated["eliminated_by"] == culprit
    assert eliminated["remaining_before"] == before
    assert f"{culprit} eliminated the last {before} candidate(s)" in report["reason"]
    assert eliminated["funnel"][0] == {"condition": "all records", "remaining": len(db)}
    relaxed = {r["without"]: r["remaining"] for r in eliminated["relaxed"]}
    assert relaxed[culprit] > 0  # dropping the culprit alone brings candidates back


def test_explain_on_an_empty_database(tmp_path):
    empty = LocalCalibrationDB(tmp_path / "empty.db", "hispec")
    report = NearestInTimeSelector("dark").explain(FRAME, empty)
    assert "holds no calibration records" in report["reason"]
    assert report["eliminated_by"]["eliminated_by"] is None
    empty.close()


def test_fits_inputs_select_like_their_metadata(db, tmp_path):
    from astropy.io import fits

    from koa_middleware.fits import FITSCalibration

    hdu = fits.PrimaryHDU()
    hdu.header["DATE-OBS"] = "2024-01-05"
    hdu.header["UTC"] = "02:00:00"
    hdu.header["SPECTROG"] = "spec_a"
    hdu.header["INSTERA"] = "era1"
    hdu.header["IMAGETYP"] = "object"
    path = tmp_path / "science_0001.fits"
    hdu.writeto(path)
    dark = NearestInTimeSelector("dark", master_only=True, origin="KECK")
    expected = dark.select(FRAME, db)["filename"]
    assert dark.select(str(path), db)["filename"] == expected
    assert dark.select(path, db)["filename"] == expected
    assert dark.select(FITSCalibration(path), db)["filename"] == expected
    report = dark.explain(str(path), db)
    assert report["input"]["datetime_obs"] == "2024-01-05T02:00:00.000"


# -- the index-narrowed query answers exactly as the plain ranking ------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_record = st.fixed_dictionaries(
    {
        "cal_type": st.sampled_from(["dark", "flat"]),
        "spectrograph": st.sampled_from(["spec_a", "spec_b"]),
        "instrument_era": st.sampled_from(["era1", "era2"]),
        "mjd_start": st.integers(0, 40).map(lambda n: 60000 + n / 4),  # quarter days make ties
        "cal_version": st.integers(1, 3).map(lambda n: f"{n:03d}"),
        "master_cal": st.sampled_from([0, 1]),
        "origin": st.sampled_from(["KECK", "LOCAL"]),
    }
)
_selector = st.one_of(
    st.builds(
        NearestInTimeSelector,
        st.sampled_from(["dark", "flat"]),
        max_days=st.sampled_from([None, 0.5, 3]),
        master_only=st.booleans(),
        origin=st.sampled_from(["ANY", "KECK"]),
    ),
    st.builds(
        LatestVersionSelector,
        st.sampled_from(["dark", "flat"]),
        validity_days=st.sampled_from([0.25, 1, 4]),
        master_only=st.booleans(),
        origin=st.sampled_from(["ANY", "LOCAL"]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(_record, max_size=30),
    untimed=st.booleans(),
    selector=_selector,
    frame_mjd=st.integers(-8, 48).map(lambda n: 60000 + n / 4 + 0.01 * (n % 3)),
    spectrograph=st.sampled_from(["spec_a", "spec_b"]),
)
def test_select_matches_the_full_ranking(records, untimed, selector, frame_mjd, spectrograph):
    from koa_middleware.fits import datetime_from_mjd

    db = LocalCalibrationDB(":memory:", "hispec")
    if untimed and records:  # a record without mjd_start: its time comes from datetime_obs
        records[0] = dict(records[0], mjd_start=None)
    rows = []
    for index, record in enumerate(records):
        mjd = record["mjd_start"] if record["mjd_start"] is not None else 60000 + index / 8
        rows.append(
            dict(record, id=str(uuid.uuid4()), filename=f"c{index}.fits",
                 datetime_obs=datetime_from_mjd(mjd), last_updated=f"2024-01-01T00:00:{index:02d}")
        )  # fmt: skip
    if rows:
        db.add(rows)
    frame = {"mjd_start": frame_mjd, "spectrograph": spectrograph, "instrument_era": "era1"}
    ranking = selector.explain_candidates(frame, db)
    assert selector.select(frame, db) == (ranking[0] if ranking else None)
    db.close()

"""Retraction on a real koa-archive, end to end: the archive withdraws a calibration and
every cache learns of it on its next sync; selection chooses the next best."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from koa_middleware import CalibrationSelector
from koa_middleware.errors import CalibrationNotFoundError, RetractedCalibrationError
from koa_middleware.selectors import NearestInTimeSelector
from support.archive import make_client
from support.models import FileModel, dark
from support.retract_archive import archive_cli, archive_clock_passes

#: A frame of night 2 (darks of nights 1, 2 and 3 are published: night 2's is nearest).
FRAME = {"filename": "sci.fits", "datetime_obs": "2024-01-02T06:00:00",
         "spectrograph": "spec_a", "instrument_era": "era1"}  # fmt: skip


class OwnSQLSelector(CalibrationSelector):
    """A selector written the way pipelines write them: its own SQL on the table's name."""

    def __init__(self, table: str):
        super().__init__()
        self.table = table

    def get_candidates(self, input, db, **kwargs):
        meta = self.get_metadata(input)
        return db.custom_query(
            f"SELECT * FROM {self.table} WHERE cal_type = 'dark' "
            "ORDER BY ABS(julianday(datetime_obs) - julianday(:t)), rowid",
            {"t": meta["datetime_obs"]},
        )


def publish_darks(open_store, archive, nights, name="publisher", origin="KECK"):
    """Register darks of ``nights`` (0 is night 1) in a publishing store and push them."""
    publisher = open_store(archive.url(2), archive.tokens["write"], name=name, sync_on_init=False)
    records = []
    for night in nights:
        model = FileModel(
            dark(night, instrument_era="era1", mjd_start=60310.0 + night),
            data=os.urandom(1000 + night),
        )
        records.append(publisher.register_calibration(model, origin=origin)[1])
    pushed = publisher.sync_records_to_remote()
    assert sorted(r["id"] for r in pushed) == sorted(r["id"] for r in records)
    return publisher, records


def chosen(store, instrument) -> list[str]:
    """The ids the built-in selector and a selector running its own SQL choose for FRAME."""
    return [
        store.select_and_get_calibration(FRAME, selector)[1]["id"]
        for selector in (NearestInTimeSelector("dark"), OwnSQLSelector(instrument))
    ]


@pytest.mark.parametrize("how", ["koa-archive retract", "RemoteCalibrationDB.retract"])
def test_a_calibration_retracted_on_the_archive_is_skipped_everywhere(
    archive, open_store, instrument, how
):
    _, darks = publish_darks(open_store, archive, range(3))
    night1, night2, night3 = (record["id"] for record in darks)
    reader = open_store(archive.url(2), archive.tokens["read"], name="reader")
    assert chosen(reader, instrument) == [night2, night2]

    if how == "koa-archive retract":
        done = archive_cli(
            archive.root, None, "retract", "--instrument", instrument,
            "--reason", "hot pixels  in the\nlower half", night2,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert night2 in done.stdout
    else:
        with make_client(archive.url(2), instrument, archive.tokens["write"]) as remote:
            assert remote.retract([night2], "hot pixels  in the\nlower half") == [night2]
    reason = "hot pixels in the lower half"

    # The default sync (the changes feed on a v2 archive) brings the retraction.
    updated = reader.sync_records_from_remote()
    assert [r["id"] for r in updated] == [night2]
    assert len(reader.local_db) == 3  # the record stays, beside its retraction
    assert chosen(reader, instrument) == [night3, night3]
    report = reader.explain(FRAME, NearestInTimeSelector("dark"))
    assert report["chosen"]["id"] == night3
    [withdrawn] = report["retracted"]
    assert (withdrawn["id"], withdrawn["reason"]) == (night2, reason)
    with pytest.raises(RetractedCalibrationError, match="hot pixels in the lower half"):
        reader.get_calibration(night2)
    path, record = reader.get_calibration(night2, allow_retracted=True)  # the file stays
    assert Path(path).is_file() and record["id"] == night2

    # A cache that syncs for the first time, or fetches just this record, knows too.
    fresh = open_store(archive.url(2), archive.tokens["read"], name="fresh")
    assert len(fresh.local_db) == 3 and chosen(fresh, instrument) == [night3, night3]
    assert fresh.sync_records_from_remote() == []  # as many records on both sides
    one = open_store(archive.url(2), archive.tokens["read"], name="one", sync_on_init=False)
    one.sync_records_from_remote(cals=[night2])
    assert one.local_db.retraction(night2)["reason"] == reason
    with pytest.raises(RetractedCalibrationError):
        open_store(
            archive.url(2), archive.tokens["read"], name="byid", sync_on_init=False
        ).get_calibration(night2)
    with make_client(archive.url(2), instrument, archive.tokens["read"]) as remote:
        assert remote.query(cal_id=night2)["retract_reason"] == reason
        assert night2 not in {r["id"] for r in remote.query(cal_type="dark")}

    # A v1 archive's query hides it: a v1 cache never sees it.
    old = open_store(archive.url(1), archive.tokens["read"], name="v1")
    assert sorted(r["id"] for r in old.local_db.rows) == sorted([night1, night3])
    assert chosen(old, instrument) == [night3, night3]
    with pytest.raises(CalibrationNotFoundError):
        old.get_calibration(night2)

    # Made live again on the archive: selectable again after the next sync.
    if how == "koa-archive retract":
        done = archive_cli(archive.root, None, "unretract", "--instrument", instrument, night2)
        assert done.returncode == 0, done.stderr
        assert [r["id"] for r in reader.sync_records_from_remote(mode="last_updated")] == [night2]
    else:
        with make_client(archive.url(2), instrument, archive.tokens["write"]) as remote:
            assert remote.unretract([night2]) == [night2]
        assert [r["id"] for r in reader.sync_records_from_remote()] == [night2]
    assert reader.local_db.retraction(night2) is None
    assert chosen(reader, instrument) == [night2, night2]
    assert reader.get_calibration(night2)[1]["id"] == night2
    assert reader.explain(FRAME, NearestInTimeSelector("dark"))["retracted"] == []


def test_retracting_needs_a_write_token(archive, open_store, instrument):
    from koa_middleware.errors import AuthenticationError

    _, darks = publish_darks(open_store, archive, [0])
    with make_client(archive.url(2), instrument, archive.tokens["read"]) as remote:
        with pytest.raises(AuthenticationError, match="403"):
            remote.retract([darks[0]["id"]], "bad")
    with make_client(archive.url(2), instrument, archive.tokens["write"]) as remote:
        with pytest.raises(CalibrationNotFoundError, match="not calibrations of"):
            remote.retract([darks[0]["id"], "7c4e28ba-2fa1-4d2b-883f-0016d3cca427"], "bad")
        assert remote.query(cal_id=darks[0]["id"])["retracted_at"] is None


def test_a_store_retracts_its_own_calibration_and_pushes_the_retraction(
    archive, open_store, instrument
):
    publisher, darks = publish_darks(open_store, archive, range(3), origin=None)
    night2, night3 = darks[1]["id"], darks[2]["id"]
    reader = open_store(archive.url(2), archive.tokens["read"], name="reader")
    assert chosen(reader, instrument)[0] == night2

    publisher.retract([night2], reason="bad  flat")
    assert publisher.sync_records_to_remote() == []  # nothing new to upload
    assert publisher.last_pushed_retractions == [night2]
    with make_client(archive.url(2), instrument, archive.tokens["read"]) as remote:
        on_archive = remote.query(cal_id=night2)
        assert on_archive["retract_reason"] == "bad flat" and on_archive["retracted_at"]
        assert night2 not in {r["id"] for r in remote.query()}
    # Pushing again sends nothing more.
    publisher.sync_records_to_remote()
    assert publisher.last_pushed_retractions == []

    reader.sync_records_from_remote()
    assert reader.local_db.retraction(night2)["reason"] == "bad flat"
    assert chosen(reader, instrument) == [night3, night3]
    with pytest.raises(RetractedCalibrationError, match="bad flat"):
        reader.get_calibration(night2)


def test_as_of_selects_by_the_archive_s_publication_times(archive, open_store, instrument):
    publisher, first = publish_darks(open_store, archive, [0, 2])
    night1, night3 = first[0]["id"], first[1]["id"]
    with make_client(archive.url(2), instrument, archive.tokens["write"]) as remote:
        published_first = remote.query(cal_id=night1)["published_at"]
        assert remote.query(cal_id=night3)["published_at"] == published_first
        # What follows is later on the archive's clock than the first publication.
        archive_clock_passes(remote, night1, published_first)
        model = FileModel(dark(1, instrument_era="era1", mjd_start=60311.0), data=b"n2" * 500)
        night2 = publisher.register_calibration(model, origin="KECK")[1]["id"]
        assert [r["id"] for r in publisher.sync_records_to_remote()] == [night2]
        published_second = remote.query(cal_id=night2)["published_at"]
        assert published_second > published_first

    reader = open_store(archive.url(2), archive.tokens["read"], name="reader")
    selector = NearestInTimeSelector("dark")
    before = reader.as_of(published_first)
    assert before.select_and_get_calibration(FRAME, selector)[1]["id"] == night3
    assert reader.as_of(published_second).select(FRAME, selector)["id"] == night2
    assert reader.select_and_get_calibration(FRAME, selector)[1]["id"] == night2
    with pytest.raises(CalibrationNotFoundError):
        reader.as_of("2000-01-01T00:00:00").select_and_get_calibration(FRAME, selector)

    # Retracted later: as of its publication it was still the choice, and is served.
    with make_client(archive.url(2), instrument, archive.tokens["write"]) as remote:
        remote.retract([night2], "bad")
    reader.sync_records_from_remote()
    assert reader.select_and_get_calibration(FRAME, selector)[1]["id"] == night3
    path, record = reader.as_of(published_second).select_and_get_calibration(FRAME, selector)
    assert record["id"] == night2 and Path(path).is_file()

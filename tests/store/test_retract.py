"""Retracting calibrations in a local cache: selection skips them, asking for one refuses."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from koa_middleware import CalibrationSelector, CalibrationStore
from koa_middleware.errors import (
    CalibrationNotFoundError,
    InvalidRecordError,
    RetractedCalibrationError,
)
from koa_middleware.selectors import NearestInTimeSelector
from support.models import FileModel, dark

FRAME = {"filename": "sci.fits", "datetime_obs": "2024-01-02T06:00:00",
         "spectrograph": "spec_a", "instrument_era": "era1"}  # fmt: skip


class OwnSQLSelector(CalibrationSelector):
    """A selector written the way pipelines write them: its own SQL on the table's name."""

    def get_candidates(self, input, db, **kwargs):
        meta = self.get_metadata(input)
        return db.custom_query(
            "SELECT * FROM hispec WHERE cal_type = 'dark' "
            "ORDER BY ABS(julianday(datetime_obs) - julianday(:t)), rowid",
            {"t": meta["datetime_obs"]},
        )


class RowsWhereSelector(CalibrationSelector):
    """As the reference's pipelines do: ``db.rows_where`` with an ordering."""

    def get_candidates(self, input, db, **kwargs):
        meta = self.get_metadata(input)
        return db.rows_where(
            "cal_type = :cal_type", {"cal_type": "dark", "mjd_start": meta["mjd_start"]},
            order_by="ABS(mjd_start - :mjd_start)",
        )  # fmt: skip


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("KOA_ALLOW_RETRACTED", raising=False)
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        yield store


@pytest.fixture(params=["hispec_calibrations.db", ":memory:"], ids=["file", "memory"])
def any_store(tmp_path, monkeypatch, request):
    """A store whose database is a file, or one in memory: selection is the same on both."""
    monkeypatch.delenv("KOA_ALLOW_RETRACTED", raising=False)
    cache = str(tmp_path / "cache")
    with CalibrationStore("hispec", cache, request.param, connect_remote=False) as store:
        yield store


def register_darks(store) -> list[dict]:
    """Darks of nights 1, 2 and 3 (the frame is on night 2)."""
    models = [FileModel(dark(i, instrument_era="era1", mjd_start=60310.0 + i)) for i in range(3)]
    return [store.register_calibration(model)[1] for model in models]


@pytest.fixture
def darks(store):
    return register_darks(store)


SELECTORS = [NearestInTimeSelector("dark"), OwnSQLSelector(), RowsWhereSelector()]


@pytest.mark.parametrize("selector", SELECTORS, ids=lambda s: type(s).__name__)
def test_every_kind_of_selector_skips_a_retracted_calibration(any_store, selector):
    darks = register_darks(any_store)
    assert any_store.select_and_get_calibration(FRAME, selector)[1]["id"] == darks[1]["id"]
    any_store.retract([darks[1]["id"]], reason="hot pixels")
    _path, record = any_store.select_and_get_calibration(FRAME, selector)
    assert record["id"] in {darks[0]["id"], darks[2]["id"]}
    assert any_store.explain(FRAME, selector)["retracted"][0]["id"] == darks[1]["id"]


def test_selection_follows_columns_added_after_its_first_use(any_store):
    """A selection, then a registration that brings a new column, then a selection using it."""
    darks = register_darks(any_store)
    selector = NearestInTimeSelector("dark")
    assert any_store.select_and_get_calibration(FRAME, selector)[1]["id"] == darks[1]["id"]
    _, new = any_store.register_calibration(
        FileModel(dark(5, instrument_era="era1", detector_gain=2.5))
    )
    rows = any_store.selection_db().custom_query(
        "SELECT id FROM hispec WHERE detector_gain = :g", {"g": 2.5}
    )
    assert rows == [{"id": new["id"]}]
    any_store.retract(new["id"], reason="wrong gain")
    assert list(any_store.selection_db().rows_where("detector_gain IS NOT NULL")) == []


def test_asking_for_a_retracted_calibration_names_the_reason(store, darks):
    store.retract(darks[1]["id"], reason="hot   pixels in\nthe lower half")
    with pytest.raises(RetractedCalibrationError, match="hot pixels in the lower half") as caught:
        store.get_calibration(darks[1]["id"])
    assert caught.value.cal_id == darks[1]["id"]
    assert "KOA_ALLOW_RETRACTED=1" in str(caught.value)


def test_allowed_retracted_calibrations_are_served_with_a_warning(
    store, darks, caplog, monkeypatch
):
    store.retract(darks[1]["id"], reason="hot pixels")
    with caplog.at_level(logging.WARNING):
        path, record = store.get_calibration(darks[1]["id"], allow_retracted=True)
    assert Path(path).is_file() and record["id"] == darks[1]["id"]
    assert "retracted" in caplog.text and "hot pixels" in caplog.text
    monkeypatch.setenv("KOA_ALLOW_RETRACTED", "1")
    with CalibrationStore("hispec", store.cache_dir, connect_remote=False) as allowing:
        assert allowing.get_calibration(darks[1]["id"])[1]["id"] == darks[1]["id"]


def test_unretract_makes_it_selectable_again(store, darks):
    store.retract(darks[1]["id"], reason="hot pixels")
    store.unretract(darks[1]["id"])
    assert (
        store.select_and_get_calibration(FRAME, NearestInTimeSelector("dark"))[1]["id"]
        == (darks[1]["id"])
    )


def test_a_retraction_outlives_the_store(store, darks):
    store.retract(darks[1]["id"], reason="hot pixels")
    with CalibrationStore("hispec", store.cache_dir, connect_remote=False) as again:
        with pytest.raises(RetractedCalibrationError):
            again.get_calibration(darks[1]["id"])
        assert len(again.local_db) == 3  # the record stays, and its file
        assert Path(again.layout.path_for(darks[1]["filename"])).is_file()


@pytest.mark.parametrize(
    ("ids", "reason", "error", "message"),
    [
        (["not-an-id"], "bad", InvalidRecordError, "id"),
        (["1b4e28ba-2fa1-4d2b-883f-0016d3cca427"], "bad", CalibrationNotFoundError, "not in"),
        (None, "   ", InvalidRecordError, "needs a reason"),
        (None, "x" * 3000, InvalidRecordError, "under 2,000"),
    ],
)
def test_a_bad_retraction_changes_nothing(store, darks, ids, reason, error, message):
    ids = [darks[0]["id"], *(ids or [])]
    with pytest.raises(error, match=message):
        store.retract(ids, reason=reason)
    assert store.local_db.retractions() == {}


def test_a_calibration_of_another_origin_is_retracted_where_it_was_made(store):
    _, keck = store.register_calibration(FileModel(dark(5)), origin="KECK")
    with pytest.raises(InvalidRecordError, match="koa-archive retract"):
        store.retract(keck["id"], reason="bad")


def test_as_of_selects_among_the_records_published_by_then(store, darks):
    times = {darks[0]["id"]: "2026-01-01T00:00:00.000", darks[1]["id"]: "2026-03-01T00:00:00.000"}
    store.local_db.set_published(times)
    store.local_db.set_published({darks[2]["id"]: "2026-02-01T00:00:00.000"})
    selector = NearestInTimeSelector("dark")
    early = store.as_of("2026-01-15T00:00:00")
    assert early.select_and_get_calibration(FRAME, selector)[1]["id"] == darks[0]["id"]
    later = store.as_of("2026-02-15")
    assert later.select_and_get_calibration(FRAME, selector)[1]["id"] == darks[2]["id"]
    with pytest.raises(InvalidRecordError, match="as_of"):
        store.as_of("next tuesday")


def test_as_of_sees_a_retraction_from_its_time_on(store, darks):
    """The nearest dark, retracted at T: chosen as of before T, never as of after T."""
    store.local_db.set_published({d["id"]: "2026-01-01T00:00:00.000" for d in darks})
    selector = NearestInTimeSelector("dark")
    nearest = darks[1]["id"]
    store.local_db.set_retractions({nearest: ("2026-03-15T00:00:00.000", "hot pixels")}, True)
    store.local_db.set_retractions({darks[0]["id"]: ("2026-02-10T00:00:00.000", "bad")}, True)
    before = store.as_of("2026-03-10T00:00:00")
    assert before.select(FRAME, selector)["id"] == nearest  # live then, and served
    assert before.select_and_get_calibration(FRAME, selector)[1]["id"] == nearest
    # darks[0] is as near as darks[2], but was retracted by then too
    after = store.as_of("2026-04-01")
    assert after.select(FRAME, selector)["id"] == darks[2]["id"]
    assert after.select_and_get_calibration(FRAME, selector)[1]["id"] == darks[2]["id"]
    assert store.as_of("2026-02-01").select(FRAME, selector)["id"] == nearest


def test_explain_lists_a_retracted_candidate_with_its_reason(store, darks):
    store.retract(darks[1]["id"], reason="hot pixels")
    report = store.explain(FRAME, NearestInTimeSelector("dark"))
    assert report["chosen"]["id"] != darks[1]["id"]
    assert darks[1]["id"] not in {c["id"] for c in report["candidates"]}
    [retracted] = report["retracted"]
    assert (retracted["id"], retracted["reason"]) == (darks[1]["id"], "hot pixels")
    assert retracted["retracted_at"]


def test_a_replayed_run_uses_a_calibration_retracted_since_with_a_warning(
    store, darks, tmp_path, caplog
):
    manifest = tmp_path / "run.json"
    with store.record_manifest(manifest):
        _, used = store.select_and_get_calibration(FRAME, NearestInTimeSelector("dark"))
    store.retract(used["id"], reason="hot pixels")
    with CalibrationStore("hispec", store.cache_dir, connect_remote=False, manifest=manifest) as r:
        with caplog.at_level(logging.WARNING):
            _, record = r.select_and_get_calibration(FRAME, NearestInTimeSelector("dark"))
    assert record["id"] == used["id"]
    assert "retracted" in caplog.text and "hot pixels" in caplog.text


def test_lifecycle_fields_from_an_archive_are_kept_beside_the_record(store):
    record = {**dark(3), "id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427", "origin": "KECK",
              "published_at": "2026-01-01T00:00:00Z", "retracted_at": "2026-02-01T00:00:00",
              "retract_reason": "bad flat"}  # fmt: skip
    stored = store.local_db.add(record)
    assert not {"published_at", "retracted_at", "retract_reason"} & set(stored)
    assert not {"published_at", "retracted_at", "retract_reason"} & set(store.local_db.columns)
    assert store.local_db.retraction(record["id"]) == {
        "retracted_at": "2026-02-01T00:00:00.000", "reason": "bad flat", "pushed": True
    }  # fmt: skip
    store.local_db.add({**record, "retracted_at": None, "retract_reason": None})
    assert store.local_db.retraction(record["id"]) is None  # the archive made it live again


@pytest.mark.parametrize(
    "bad", [{"retracted_at": "yesterday"}, {"published_at": 5}, {"retract_reason": "x" * 2001}]
)
def test_bad_lifecycle_fields_are_refused(store, bad):
    record = {**dark(3), "id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427", **bad}
    with pytest.raises(InvalidRecordError):
        store.local_db.add(record)
    assert len(store.local_db) == 0


def test_remove_deletes_a_local_record_and_its_file(store, darks):
    path = store.layout.path_for(darks[0]["filename"])
    store.get_calibration(darks[0]["id"])
    [removed] = store.remove(darks[0]["id"])
    assert removed["id"] == darks[0]["id"]
    assert not path.exists() and store.local_db.query_id(darks[0]["id"]) is None
    assert store.local_db.get_file_stat(darks[0]["id"]) is None
    assert len(store.local_db) == 2


def test_remove_refuses_what_came_from_elsewhere_unless_forced(store, darks):
    _, keck = store.register_calibration(FileModel(dark(9)), origin="KECK")
    with pytest.raises(InvalidRecordError, match="--force"):
        store.remove([darks[0]["id"], keck["id"]])
    assert len(store.local_db) == 4  # nothing removed
    store.remove(keck["id"], force=True)
    assert store.local_db.query_id(keck["id"]) is None

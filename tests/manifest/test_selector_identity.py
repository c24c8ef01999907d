"""A manifest tells selections apart by the parameters selectors declare as selecting."""

from __future__ import annotations

import json

import pytest

from koa_middleware import CalibrationSelector, CalibrationStore
from koa_middleware.errors import ManifestError
from koa_middleware.manifest import selector_identity
from koa_middleware.selectors import LatestVersionSelector, NearestInTimeSelector
from support import recorded_run
from support.recorded_run import replay_one

FRAME = recorded_run.FRAMES[1]


class Dark(NearestInTimeSelector):
    """A pipeline's dark selector as a run records it."""

    def __init__(self, **kwargs):
        super().__init__("dark", **kwargs)


class DarkNextRelease(Dark):
    """``Dark`` a release later: it gained an option that selects, off by default."""

    __qualname__ = "Dark"  # the same class to a manifest
    selection_parameters = (*Dark.selection_parameters, "min_exptime")

    def __init__(self, min_exptime: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.min_exptime = min_exptime


class NightDark(CalibrationSelector):
    """A selector on the base class that declares nothing: every public attribute counts."""

    def get_candidates(self, input, db, **kwargs):
        return db.table.rows_where(
            "cal_type = 'dark' AND ABS(julianday(datetime_obs) - julianday(:t)) <= :days",
            {"t": self.get_metadata(input)["datetime_obs"], "days": self.night_window},
            order_by="datetime_obs DESC",
        )


@pytest.fixture
def store(tmp_path, no_koa_environment):
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        recorded_run.register(store)
        yield store


def record(store, tmp_path, selector) -> tuple:
    """Record one selection for FRAME; return the manifest and the chosen id."""
    path = tmp_path / "run.json"
    with store.record_manifest(path):
        chosen = store.select_and_get_calibration(FRAME, selector)[1]["id"]
    return path, chosen


def replay(store, manifest, selector) -> str:
    return replay_one(manifest, store.cache_dir, FRAME, selector)


def test_the_identity_holds_the_selecting_parameters_away_from_their_defaults():
    identity = selector_identity(NearestInTimeSelector("dark", max_days=3, explain_limit=5))
    assert identity == {
        "class": "koa_middleware.selectors:NearestInTimeSelector",
        "parameters": {"cal_type": "dark", "max_days": 3.0},
    }


def test_an_origin_counts_when_given_and_not_when_the_environment_gives_it(monkeypatch):
    monkeypatch.setenv("KOA_CALIBRATION_ORIGIN", "KECK")
    assert "origin" not in selector_identity(LatestVersionSelector("flat"))["parameters"]
    given = selector_identity(LatestVersionSelector("flat", origin="keck"))
    assert given["parameters"]["origin"] == "KECK"


def test_a_selector_that_declares_nothing_is_identified_by_every_public_attribute():
    identity = selector_identity(NightDark(origin="local", night_window=2))
    assert identity["parameters"] == {"origin": "LOCAL", "night_window": 2}


def test_a_recorded_entry_holds_only_what_selects(store, tmp_path):
    manifest, _ = record(store, tmp_path, NearestInTimeSelector("dark", explain_limit=5))
    entry = json.loads(manifest.read_text())["entries"][0]
    assert entry["selector"]["parameters"] == {"cal_type": "dark"}


def test_a_subclass_that_gains_an_option_with_a_default_replays_older_runs(store, tmp_path):
    manifest, chosen = record(store, tmp_path, Dark(max_days=2))
    assert replay(store, manifest, DarkNextRelease(max_days=2)) == chosen


def test_the_new_option_set_is_another_selection_and_the_error_names_it(store, tmp_path):
    manifest, _ = record(store, tmp_path, Dark(max_days=2))
    with pytest.raises(ManifestError, match=r"pins no calibration.*other min_exptime"):
        replay(store, manifest, DarkNextRelease(max_days=2, min_exptime=30))


def test_another_cal_type_does_not_replay(store, tmp_path):
    manifest, _ = record(store, tmp_path, NearestInTimeSelector("dark"))
    with pytest.raises(ManifestError, match=r"pins no calibration.*other cal_type"):
        replay(store, manifest, NearestInTimeSelector("flat"))


def test_explain_limit_does_not_change_the_selection(store, tmp_path):
    manifest, chosen = record(store, tmp_path, NearestInTimeSelector("dark", explain_limit=5))
    assert replay(store, manifest, NearestInTimeSelector("dark", explain_limit=500)) == chosen
    assert replay(store, manifest, NearestInTimeSelector("dark")) == chosen


def test_a_selector_that_declares_nothing_replays_only_with_the_same_attributes(store, tmp_path):
    manifest, chosen = record(store, tmp_path, NightDark(night_window=2))
    assert replay(store, manifest, NightDark(night_window=2)) == chosen
    with pytest.raises(ManifestError, match="pins no calibration"):
        replay(store, manifest, NightDark(night_window=3))

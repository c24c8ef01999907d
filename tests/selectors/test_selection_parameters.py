"""Selectors declare the parameters that select; DEFAULT leaves the origin to the environment."""

from __future__ import annotations

import pickle

import pytest

from koa_middleware.selector_base import DEFAULT, CalibrationSelector
from koa_middleware.selector_options import constructor_defaults
from koa_middleware.selectors import LatestVersionSelector, NearestInTimeSelector


@pytest.fixture(autouse=True)
def origin_from_environment(monkeypatch):
    """The environment names an origin, so that taking it from there shows."""
    monkeypatch.delenv("KOA_CALIBRATIONS_ORIGIN", raising=False)
    monkeypatch.setenv("KOA_CALIBRATION_ORIGIN", "keck")


class MinExptimeDark(NearestInTimeSelector):
    """A pipeline's subclass with an option of its own that selects."""

    selection_parameters = (*NearestInTimeSelector.selection_parameters, "min_exptime")

    def __init__(self, min_exptime: float | None = None, max_days: float | None = 2, **kwargs):
        super().__init__("dark", max_days=max_days, **kwargs)
        self.min_exptime = min_exptime


def test_an_origin_left_to_its_default_reads_the_environment():
    assert CalibrationSelector().origin == "KECK"
    assert CalibrationSelector(DEFAULT).origin == "KECK"
    assert NearestInTimeSelector("dark", origin=DEFAULT).origin == "KECK"


def test_none_reads_the_environment_as_in_the_reference_implementation():
    assert CalibrationSelector(None).origin == "KECK"
    assert CalibrationSelector(origin=None).origin == "KECK"


def test_an_origin_given_positionally_or_by_name_is_used():
    assert CalibrationSelector("local").origin == "LOCAL"
    assert LatestVersionSelector("flat", origin="any").origin == "ANY"


def test_default_is_one_false_value_that_survives_pickling():
    assert repr(DEFAULT) == "DEFAULT"
    assert not DEFAULT
    assert pickle.loads(pickle.dumps(DEFAULT)) is DEFAULT


def test_the_built_in_selectors_declare_what_selects_and_not_what_is_shown():
    nearest = NearestInTimeSelector("dark", max_days=3, origin="keck", explain_limit=5)
    assert nearest.selection_values() == {
        "cal_type": "dark",
        "match": ("spectrograph", "instrument_era"),
        "master_only": False,
        "origin": "KECK",
        "max_days": 3.0,
    }
    latest = LatestVersionSelector("flat", validity_days=7, explain_limit=5)
    assert set(latest.selection_values()) == {"cal_type", "match", "master_only", "validity_days"}


def test_an_origin_from_the_environment_is_not_a_selection_value():
    assert "origin" not in NearestInTimeSelector("dark").selection_values()
    assert NearestInTimeSelector("dark", origin="KECK").selection_values()["origin"] == "KECK"


def test_an_origin_set_after_construction_is_a_selection_value():
    selector = NearestInTimeSelector("dark")
    selector.origin = "LOCAL"
    assert selector.selection_values()["origin"] == "LOCAL"


def test_a_selector_that_declares_nothing_counts_every_public_attribute():
    selector = CalibrationSelector(origin="local", cal_type="dark", night_window=2)
    selector._cache = {}
    assert selector.selection_values() == {"origin": "LOCAL", "cal_type": "dark", "night_window": 2}


def test_a_subclass_extends_the_declaration_with_its_own_option():
    values = MinExptimeDark(min_exptime=30).selection_values()
    assert values["min_exptime"] == 30 and values["cal_type"] == "dark"


def test_defaults_come_from_the_constructors_most_derived_first():
    defaults = MinExptimeDark.parameter_defaults()
    assert defaults["min_exptime"] is None
    assert defaults["max_days"] == 2  # the subclass's, not the built-in's None
    assert defaults["match"] == ("spectrograph", "instrument_era")
    assert "origin" not in defaults  # DEFAULT: resolved when the selector is made
    assert "cal_type" not in defaults  # required
    assert constructor_defaults(MinExptimeDark)["origin"] is DEFAULT

"""A manifest recorded by an earlier release replays with selectors that gained options since."""

from __future__ import annotations

import pytest

from koa_middleware.errors import ManifestError
from koa_middleware.selectors import LatestVersionSelector, NearestInTimeSelector
from support import recorded_run
from support.recorded_run import pin_of, replay_one


class PipelineDarkNextRelease(recorded_run.PipelineDark):
    """``support.recorded_run.PipelineDark`` a release later, with an option that selects."""

    # The same class to a manifest: the one the run was recorded with, grown an option.
    __module__ = "support.recorded_run"
    __qualname__ = "PipelineDark"
    selection_parameters = (*recorded_run.PipelineDark.selection_parameters, "min_exptime")

    def __init__(self, min_exptime: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.min_exptime = min_exptime


@pytest.mark.parametrize("frame", recorded_run.FRAMES, ids=["night2", "night5"])
def test_a_subclass_with_a_new_option_replays_what_was_recorded_before_it(cache, manifest, frame):
    selector = PipelineDarkNextRelease(max_days=2)
    assert replay_one(manifest, cache, frame, selector) == pin_of(frame, 4)


def test_a_new_option_set_away_from_its_default_is_another_selection(cache, manifest):
    selector = PipelineDarkNextRelease(max_days=2, min_exptime=30)
    with pytest.raises(ManifestError, match="pins no calibration"):
        replay_one(manifest, cache, recorded_run.FRAMES[0], selector)


def test_explain_limit_is_not_part_of_the_recorded_selection(cache, manifest):
    frame = recorded_run.FRAMES[1]
    assert replay_one(
        manifest, cache, frame, NearestInTimeSelector("dark", explain_limit=3)
    ) == pin_of(frame, 0)
    flat = LatestVersionSelector("flat", validity_days=7, match="spectrograph", explain_limit=99)
    assert replay_one(manifest, cache, frame, flat) == pin_of(frame, 2)


def test_the_origin_the_environment_gives_is_not_part_of_the_recorded_selection(
    cache, manifest, monkeypatch
):
    monkeypatch.setenv("KOA_CALIBRATION_ORIGIN", "KECK")  # the run's calibrations are all LOCAL
    frame = recorded_run.FRAMES[1]
    assert replay_one(manifest, cache, frame, NearestInTimeSelector("dark")) == pin_of(frame, 0)
    with pytest.raises(ManifestError, match="pins no calibration"):  # given, it counts
        replay_one(manifest, cache, frame, NearestInTimeSelector("dark", origin="KECK"))

"""Manifests recorded by earlier releases still replay: the pinned calibrations come back.

These tests pass with the release that recorded the manifest too.
"""

from __future__ import annotations

import json

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.errors import ManifestError
from koa_middleware.selectors import LatestVersionSelector, NearestInTimeSelector
from support import recorded_run


def test_the_recorded_manifest_holds_every_selection_of_the_run():
    document = json.loads(recorded_run.MANIFEST.read_text())
    assert document["format"] == "koa-manifest/1"
    expected = len(recorded_run.FRAMES) * len(recorded_run.selectors())
    assert len(recorded_run.pins(recorded_run.MANIFEST)) == expected


def test_a_manifest_recorded_before_selectors_declared_their_parameters_replays(cache, manifest):
    with CalibrationStore("hispec", cache, connect_remote=False) as fresh:
        selected_now = [record["id"] for _, _, record in recorded_run.run(fresh)]
    with CalibrationStore("hispec", cache, connect_remote=False, manifest=manifest) as replay:
        replayed = [
            (frame["filename"], f"{type(s).__module__}:{type(s).__qualname__}", record["id"])
            for frame, s, record in recorded_run.run(replay)
        ]
    assert replayed == recorded_run.pins(recorded_run.MANIFEST)
    assert selected_now != [pin for _, _, pin in replayed]  # the pins decide, not the selection


@pytest.mark.parametrize(
    "selector",
    [
        NearestInTimeSelector("flat"),
        NearestInTimeSelector("dark", max_days=4),
        NearestInTimeSelector("dark", master_only=True),
        NearestInTimeSelector("dark", match=("spectrograph",)),
        NearestInTimeSelector("dark", origin="KECK"),
        LatestVersionSelector("flat", validity_days=2),
        recorded_run.RowsWhereDark(cal_type="flat"),
    ],
    ids=repr,
)
def test_a_changed_selecting_parameter_is_not_the_recorded_selection(cache, manifest, selector):
    with CalibrationStore("hispec", cache, connect_remote=False, manifest=manifest) as replay:
        with pytest.raises(ManifestError, match="pins no calibration"):
            replay.select_and_get_calibration(recorded_run.FRAMES[0], selector)

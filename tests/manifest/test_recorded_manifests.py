"""Manifests recorded by earlier releases still replay: the pinned calibrations come back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.errors import ManifestError
from koa_middleware.selectors import LatestVersionSelector, NearestInTimeSelector
from support import recorded_run
from support.models import FileModel, dark

#: Written by the release before selectors declared their parameters (see support.recorded_run).
RECORDED = Path(__file__).parent / "data" / "recorded_koa_manifest_1.json"


@pytest.fixture
def cache(tmp_path, no_koa_environment):
    """A cache holding the recorded run's calibrations, and newer ones nearer to its frames."""
    folder = str(tmp_path / "cache")
    with CalibrationStore("hispec", folder, connect_remote=False) as store:
        recorded_run.register(store)
        for night in (2, 5):  # each nearer to a frame than anything the run chose
            nearer = dark(night - 1, instrument_era="era1", datetime_obs=f"2024-01-0{night}T05:00")
            nearer["filename"] = f"nearer_dark_{night}.fits"
            store.register_calibration(FileModel(nearer))
    return folder


@pytest.fixture
def manifest(tmp_path):
    """A copy of the recorded manifest (a replay never writes it, the copy keeps that safe)."""
    return Path(shutil.copy(RECORDED, tmp_path / "recorded.json"))


def pinned(path: Path) -> list[tuple[str, str, str]]:
    """(input, selector class, pinned id) of each selection the manifest holds."""
    entries = json.loads(path.read_text())["entries"]
    return [
        (e["input"]["name"], e["selector"]["class"], e["chosen"]["id"])
        for e in entries
        if e["call"] == "select_and_get_calibration"
    ]


def test_the_recorded_manifest_holds_every_selection_of_the_run():
    document = json.loads(RECORDED.read_text())
    assert document["format"] == "koa-manifest/1"
    assert len(pinned(RECORDED)) == len(recorded_run.FRAMES) * len(recorded_run.selectors())


def test_a_manifest_recorded_before_selectors_declared_their_parameters_replays(cache, manifest):
    with CalibrationStore("hispec", cache, connect_remote=False) as fresh:
        selected_now = [record["id"] for _, _, record in recorded_run.run(fresh)]
    with CalibrationStore("hispec", cache, connect_remote=False, manifest=manifest) as replay:
        replayed = [
            (frame["filename"], f"{type(s).__module__}:{type(s).__qualname__}", record["id"])
            for frame, s, record in recorded_run.run(replay)
        ]
    assert replayed == pinned(RECORDED)
    assert selected_now != [pin for _, _, pin in replayed]  # the pins decide, not the selection


def test_a_changed_selecting_parameter_is_not_the_recorded_selection(cache, manifest):
    frame = recorded_run.FRAMES[0]
    with CalibrationStore("hispec", cache, connect_remote=False, manifest=manifest) as replay:
        for selector in (
            NearestInTimeSelector("flat"),
            NearestInTimeSelector("dark", max_days=4),
            NearestInTimeSelector("dark", master_only=True),
            NearestInTimeSelector("dark", match=("spectrograph",)),
            NearestInTimeSelector("dark", origin="KECK"),
            LatestVersionSelector("flat", validity_days=2),
            recorded_run.RowsWhereDark(cal_type="flat"),
        ):
            with pytest.raises(ManifestError, match="pins no calibration"):
                replay.select_and_get_calibration(frame, selector)

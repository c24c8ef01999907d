"""A cache with the calibrations of the recorded run (support.recorded_run), and its manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore
from support import recorded_run
from support.models import FileModel, dark


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
    """A copy of the recorded manifest, so that no test can change the recorded file."""
    return Path(shutil.copy(recorded_run.MANIFEST, tmp_path / "recorded.json"))

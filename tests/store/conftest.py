from __future__ import annotations

import pytest

from koa_middleware import CalibrationStore


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A local-only store on a fresh cache in tmp_path."""
    for name in (
        "KOA_CALIBRATION_ORIGIN",
        "KOA_CALIBRATIONS_ORIGIN",
        "KOA_USE_CACHED_CALIBRATIONS",
        "KOA_LOCAL_CALIBRATION_DATABASE_FILENAME",
        "KOA_LOCAL_CALIBRATION_DATABASE_TABLE_NAME",
        "KOA_API_TOKEN",
        "KOA_CALIBRATIONS_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as s:
        yield s

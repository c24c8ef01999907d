from __future__ import annotations

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.database.local_database import LocalCalibrationDB


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


@pytest.fixture
def db(tmp_path):
    """A local database in a file of its own."""
    database = LocalCalibrationDB(tmp_path / "hispec_calibrations.db", "hispec")
    yield database
    database.close()

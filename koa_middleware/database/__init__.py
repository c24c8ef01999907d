"""The local (SQLite) and remote (archive) calibration databases."""

from __future__ import annotations

import importlib
from typing import Any

from .local_database import LocalCalibrationDB

__all__ = ["LocalCalibrationDB", "RemoteCalibrationDB", "local_database", "remote_database"]


def __getattr__(name: str) -> Any:
    # The HTTP client is imported on first use, so local-only work never loads it.
    if name == "RemoteCalibrationDB":
        from ..client.remote_database import RemoteCalibrationDB

        return RemoteCalibrationDB
    if name == "remote_database":
        return importlib.import_module(f"{__name__}.remote_database")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

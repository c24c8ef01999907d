"""koa_middleware: calibration store for Keck Observatory data-reduction pipelines.

Examples
--------
>>> from koa_middleware import CalibrationStore, CalibrationSelector
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "CalibrationSelector",
    "CalibrationStore",
    "LocalCalibrationDB",
    "SupportsCalibrationModelIO",
    "__version__",
]

# Imported on first use, so that the archive service, which shares this
# package's record rules, never loads the client store.
_EXPORTS = {
    "CalibrationSelector": "koa_middleware.selector_base",
    "CalibrationStore": "koa_middleware.store",
    "LocalCalibrationDB": "koa_middleware.database.local_database",
    "SupportsCalibrationModelIO": "koa_middleware.datamodel_protocol",
}

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

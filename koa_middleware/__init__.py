"""koa_middleware: calibration store for Keck Observatory data-reduction pipelines.

Examples
--------
>>> from koa_middleware import CalibrationStore, CalibrationSelector
"""

from __future__ import annotations

import logging

from .database import LocalCalibrationDB
from .datamodel_protocol import SupportsCalibrationModelIO
from .selector_base import CalibrationSelector
from .store import CalibrationStore

__version__ = "0.1.0"

__all__ = [
    "CalibrationSelector",
    "CalibrationStore",
    "LocalCalibrationDB",
    "SupportsCalibrationModelIO",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())

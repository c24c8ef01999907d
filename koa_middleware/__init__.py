"""koa_middleware: calibration store for Keck Observatory data-reduction pipelines.

Every public name is imported on first use, so importing the package alone
loads nothing else (the archive service, which shares the record rules, never
loads the client store). ``from koa_middleware import *`` brings every name of
``__all__``.

Examples
--------
>>> from koa_middleware import CalibrationStore, CalibrationSelector
>>> from koa_middleware import download_koa, is_valid_uuid
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

# Classes, functions and constants: name -> the module that defines it.
_EXPORTS = {
    "CalibrationSelector": "koa_middleware.selector_base",
    "CalibrationStore": "koa_middleware.store",
    "LocalCalibrationDB": "koa_middleware.database.local_database",
    "RemoteCalibrationDB": "koa_middleware.client.remote_database",
    "SupportsCalibrationModelIO": "koa_middleware.datamodel_protocol",
    "KeckObserverAuthClient": "koa_middleware.client.keck_client",
    "download_koa": "koa_middleware.client.download",
    "login_url": "koa_middleware.client.download",
    "getkoa_url": "koa_middleware.client.download",
    "caliblist_url": "koa_middleware.client.download",
    "BASE_URL_KECK": "koa_middleware.client.download",
    "is_valid_uuid": "koa_middleware.utils",
    "get_env_var_bool": "koa_middleware.utils",
    "generate_md5_file": "koa_middleware.utils",
    "get_koa_id_timestamp_from_datetime": "koa_middleware.utils",
    "generate_koa_filehandle": "koa_middleware.utils",
    "postgres_http_date_to_iso": "koa_middleware.utils",
    "isot_to_mjd": "koa_middleware.utils",
    "mjd_to_isot_ms": "koa_middleware.utils",
    "datetime_to_isot_ms": "koa_middleware.utils",
    # Names the package namespace has long carried besides its own API.
    "logger": "koa_middleware.client.download",
    "datetime": "datetime",
    "timedelta": "datetime",
    "timezone": "datetime",
    "tqdm": "tqdm",
}

# Modules reachable as attributes of the package: name -> module.
_MODULES = {
    "database": "koa_middleware.database",
    "datamodel_protocol": "koa_middleware.datamodel_protocol",
    "download": "koa_middleware.client.download",
    "keck_client": "koa_middleware.client.keck_client",
    "local_database": "koa_middleware.database.local_database",
    "remote_database": "koa_middleware.client.remote_database",
    "selector_base": "koa_middleware.selector_base",
    "store": "koa_middleware.store",
    "utils": "koa_middleware.utils",
    "hashlib": "hashlib",
    "os": "os",
    "re": "re",
}

__all__ = sorted([*_EXPORTS, *_MODULES, "logging", "__version__"])

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_MODULES})

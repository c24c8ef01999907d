"""Every name the original koa_middleware offers resolves with us, and the package stays lazy.

The name lists are data taken from the original (oirlab/KOA_Middleware, commit
4d1810a), imported in a virtualenv of its own with ``XDG_STATE_HOME`` pointing
at a temporary folder::

    import koa_middleware, koa_middleware.database, koa_middleware.utils
    sorted(n for n in dir(koa_middleware) if not n.startswith("_"))
    sorted(n for n in dir(koa_middleware.database) if not n.startswith("_"))
    sorted(n for n in dir(koa_middleware.utils) if not n.startswith("_"))
"""

from __future__ import annotations

import datetime as datetime_module
import hashlib
import logging
import os
import re
import sys
import types

import pytest
import tqdm

import koa_middleware
from support.children import run_child

REFERENCE_NAMES = [
    "BASE_URL_KECK",
    "CalibrationSelector",
    "CalibrationStore",
    "KeckObserverAuthClient",
    "LocalCalibrationDB",
    "RemoteCalibrationDB",
    "caliblist_url",
    "database",
    "datamodel_protocol",
    "datetime",
    "datetime_to_isot_ms",
    "download",
    "download_koa",
    "generate_koa_filehandle",
    "generate_md5_file",
    "get_env_var_bool",
    "get_koa_id_timestamp_from_datetime",
    "getkoa_url",
    "hashlib",
    "is_valid_uuid",
    "isot_to_mjd",
    "keck_client",
    "local_database",
    "logger",
    "logging",
    "login_url",
    "mjd_to_isot_ms",
    "os",
    "postgres_http_date_to_iso",
    "re",
    "remote_database",
    "requests",
    "selector_base",
    "store",
    "timedelta",
    "timezone",
    "tqdm",
    "utils",
]

REFERENCE_DATABASE_NAMES = [
    "LocalCalibrationDB",
    "RemoteCalibrationDB",
    "local_database",
    "remote_database",
]

REFERENCE_UTILS_NAMES = [
    "datetime",
    "datetime_to_isot_ms",
    "generate_koa_filehandle",
    "generate_md5_file",
    "get_env_var_bool",
    "get_koa_id_timestamp_from_datetime",
    "hashlib",
    "is_valid_uuid",
    "isot_to_mjd",
    "mjd_to_isot_ms",
    "os",
    "postgres_http_date_to_iso",
    "re",
    "timedelta",
    "timezone",
]

# Names of the original that deliberately do not resolve with us, and why.
NOT_PROVIDED = {
    "requests": (
        "a third-party HTTP client the original's modules import for their own use; "
        "ours use httpx, and requests is not a dependency"
    ),
}

PROVIDED = [name for name in REFERENCE_NAMES if name not in NOT_PROVIDED]

# Names that are modules, and the module each must be.
MODULES = {
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
    "logging": "logging",
    "os": "os",
    "re": "re",
}

# Classes and functions, and the module that defines each.
DEFINED_IN = {
    "CalibrationSelector": "koa_middleware.selector_base",
    "CalibrationStore": "koa_middleware.store",
    "KeckObserverAuthClient": "koa_middleware.client.keck_client",
    "LocalCalibrationDB": "koa_middleware.database.local_database",
    "RemoteCalibrationDB": "koa_middleware.client.remote_database",
    "download_koa": "koa_middleware.client.download",
    "datetime_to_isot_ms": "koa_middleware.utils",
    "generate_koa_filehandle": "koa_middleware.utils",
    "generate_md5_file": "koa_middleware.utils",
    "get_env_var_bool": "koa_middleware.utils",
    "get_koa_id_timestamp_from_datetime": "koa_middleware.utils",
    "is_valid_uuid": "koa_middleware.utils",
    "isot_to_mjd": "koa_middleware.utils",
    "mjd_to_isot_ms": "koa_middleware.utils",
    "postgres_http_date_to_iso": "koa_middleware.utils",
}

# The original's values of its module constants.
CONSTANTS = {
    "login_url": "https://koa.ipac.caltech.edu/cgi-bin/KoaAPI/nph-koaLogin?",
    "getkoa_url": "https://koa.ipac.caltech.edu/cgi-bin/getKOA/nph-getKOA?return_mode=json&",
    "caliblist_url": "https://koa.ipac.caltech.edu/cgi-bin/KoaAPI/nph-getCaliblist?",
    "BASE_URL_KECK": "https://www3.keck.hawaii.edu/api/calibrations/",
}


def test_the_lists_cover_every_name():
    assert set(NOT_PROVIDED) <= set(REFERENCE_NAMES)
    others = {"datetime", "timedelta", "timezone", "tqdm", "logger"}
    assert set(PROVIDED) == set(MODULES) | set(DEFINED_IN) | set(CONSTANTS) | others


@pytest.mark.parametrize("name", PROVIDED)
def test_every_reference_name_resolves(name):
    assert getattr(koa_middleware, name) is not None
    assert name in koa_middleware.__all__
    assert name in dir(koa_middleware)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules(name):
    module = getattr(koa_middleware, name)
    assert isinstance(module, types.ModuleType)
    assert module.__name__ == MODULES[name]


@pytest.mark.parametrize("name", sorted(DEFINED_IN))
def test_classes_and_functions(name):
    value = getattr(koa_middleware, name)
    assert value.__module__ == DEFINED_IN[name]
    assert value is getattr(sys.modules[DEFINED_IN[name]], name)


def test_constants_and_other_names():
    for name, value in CONSTANTS.items():
        assert getattr(koa_middleware, name) == value
        assert getattr(koa_middleware.client.download, name) == value
    assert koa_middleware.datetime is datetime_module.datetime
    assert koa_middleware.timedelta is datetime_module.timedelta
    assert koa_middleware.timezone is datetime_module.timezone
    assert koa_middleware.tqdm is tqdm.tqdm
    assert koa_middleware.logger is logging.getLogger("koa_middleware.client.download")
    assert (koa_middleware.os, koa_middleware.re, koa_middleware.hashlib) == (os, re, hashlib)


@pytest.mark.parametrize("name", sorted(NOT_PROVIDED))
def test_deliberate_exceptions_stay_out(name):
    assert name not in koa_middleware.__all__
    with pytest.raises(AttributeError):
        getattr(koa_middleware, name)


def test_star_import():
    namespace: dict = {}
    exec("from koa_middleware import *", namespace)
    missing = [name for name in PROVIDED if name not in namespace]
    assert missing == []
    assert namespace["CalibrationStore"] is koa_middleware.CalibrationStore
    assert namespace["download_koa"] is koa_middleware.client.download.download_koa
    assert namespace["SupportsCalibrationModelIO"] is koa_middleware.SupportsCalibrationModelIO


@pytest.mark.parametrize("name", REFERENCE_DATABASE_NAMES)
def test_database_names(name):
    import koa_middleware.database as database

    assert getattr(database, name) is not None
    assert name in database.__all__
    namespace: dict = {}
    exec("from koa_middleware.database import *", namespace)
    assert namespace[name] is getattr(database, name)


def test_utils_names():
    from koa_middleware import utils

    assert [name for name in REFERENCE_UTILS_NAMES if not hasattr(utils, name)] == []
    carried = {"datetime", "hashlib", "os", "re", "timedelta", "timezone"}
    functions = [name for name in REFERENCE_UTILS_NAMES if name not in carried]
    assert sorted(utils.__all__) == functions
    for name in functions:
        assert getattr(koa_middleware, name) is getattr(utils, name)


def _modules_loaded_by(*names: str) -> set[str]:
    """The modules a fresh interpreter has loaded once it imported ``names``.

    A name is a module, or ``module:name`` for a name taken from it.
    """
    result = run_child("imported_modules", *names)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_importing_the_package_loads_nothing_else():
    loaded = _modules_loaded_by("koa_middleware")
    assert sorted(name for name in loaded if name.startswith("koa_middleware.")) == []


def test_the_archive_service_never_loads_the_client_store():
    loaded = _modules_loaded_by(
        "koa_middleware.archive", "koa_middleware.archive.app", "koa_middleware.archive.cli"
    )
    assert "koa_middleware.archive" in loaded
    client_side = {
        "koa_middleware.store",
        "koa_middleware.client.keck_client",
        "koa_middleware.client.download",
        "koa_middleware.utils",
        "koa_middleware.client.remote_database",
    }
    assert loaded & client_side == set()


def test_local_databases_never_load_the_http_client():
    loaded = _modules_loaded_by("koa_middleware.database:LocalCalibrationDB")
    assert "koa_middleware.client.remote_database" not in loaded


def test_the_logging_module_of_the_original_imports():
    import importlib

    module = importlib.import_module("koa_middleware.logging_utils")
    assert module.logger is logging.getLogger("koa_middleware")
    # The application configures logging: nothing here prints on its own.
    assert all(isinstance(h, logging.NullHandler) for h in module.logger.handlers)

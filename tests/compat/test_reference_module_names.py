"""Every public name of every module of the original resolves from the same module path with us.

``data/reference_module_names.json`` is data taken from the original
(oirlab/KOA_Middleware, commit 4d1810a), imported with ``XDG_STATE_HOME``
pointing at a temporary folder: for each of its modules, every name of
``dir(module)`` not starting with ``_``, with what it is (``module``,
``class``, ``function``, ``value``, ``instance``) and where it comes from
(the module that defines it; a value's own value)::

    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        value = getattr(module, name)
        if isinstance(value, types.ModuleType):
            entry = {"kind": "module", "from": value.__name__}
        elif inspect.isclass(value):
            entry = {"kind": "class", "from": value.__module__}
        elif inspect.isfunction(value) or inspect.isbuiltin(value):
            entry = {"kind": "function", "from": value.__module__}
        elif isinstance(value, (str, int, float)):
            entry = {"kind": "value", "from": None, "value": value}
        else:
            entry = {"kind": "instance", "from": type(value).__module__}

Names that come from the standard library or from ``requests`` are the
original's own imports, not names offered to pipelines: they are left out.
Every other name must resolve from the same module path, and be the same
object the original's source of it gives with us (the same sqlite-utils class,
the same function of ``koa_middleware.utils``, ...).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import types
from pathlib import Path

import pytest

import koa_middleware

REFERENCE = json.loads((Path(__file__).parent / "data" / "reference_module_names.json").read_text())

#: Libraries whose names the original only imports for itself.
OWN_IMPORTS = frozenset(sys.stdlib_module_names) | {"requests"}

#: ``koa_middleware._version`` is written by setuptools-scm when the original is built
#: (it is not in its source tree); these are the names such a file carries.
VERSION_NAMES = ("__version__", "__version_tuple__", "version", "version_tuple")


def _offered(entry: dict) -> bool:
    """Whether a name is offered to pipelines (not one of the original's own imports)."""
    source = entry["from"]
    return source is None or source.split(".")[0] not in OWN_IMPORTS


CASES = [
    (module, name, entry)
    for module, names in sorted(REFERENCE.items())
    for name, entry in sorted(names.items())
    if _offered(entry)
]


def test_the_data_covers_the_names_the_issue_lists():
    listed = {
        ("koa_middleware.selector_base", "LocalCalibrationDB"),
        ("koa_middleware.store", "RemoteCalibrationDB"),
        ("koa_middleware.database.local_database", "NotFoundError"),
        ("koa_middleware.database.local_database", "Database"),
        ("koa_middleware.database.remote_database", "KeckObserverAuthClient"),
        ("koa_middleware.store", "generate_md5_file"),
        ("koa_middleware.store", "is_valid_uuid"),
        ("koa_middleware.store", "get_env_var_bool"),
        ("koa_middleware.store", "datetime_to_isot_ms"),
    }
    assert listed <= {(module, name) for module, name, _ in CASES}
    # the original's own imports are left out, and only they
    assert ("koa_middleware.download", "requests") not in {(m, n) for m, n, _ in CASES}
    assert ("koa_middleware.store", "shutil") not in {(m, n) for m, n, _ in CASES}
    assert ("koa_middleware.download", "tqdm") in {(m, n) for m, n, _ in CASES}


@pytest.mark.parametrize(("module", "name", "entry"), CASES, ids=[f"{m}:{n}" for m, n, _ in CASES])
def test_a_name_of_the_original_resolves_from_its_module(module, name, entry):
    ours = importlib.import_module(module)
    assert hasattr(ours, name), f"from {module} import {name} fails"
    value = getattr(ours, name)
    namespace: dict = {}
    exec(f"from {module} import {name}", namespace)
    assert namespace[name] is value
    kind, source = entry["kind"], entry["from"]
    if kind == "module":
        assert isinstance(value, types.ModuleType)
        assert value is importlib.import_module(source)
    elif kind in ("class", "function"):
        # the same object the original's defining module gives with us
        assert value is getattr(importlib.import_module(source), name)
    elif kind == "value":
        assert value == entry["value"]
    else:
        assert type(value).__module__ == source


def test_every_module_of_the_original_imports():
    for module in REFERENCE:
        assert isinstance(importlib.import_module(module), types.ModuleType)


def test_the_version_module():
    from koa_middleware import _version

    for name in VERSION_NAMES:
        assert hasattr(_version, name), name
    assert _version.__version__ == _version.version == koa_middleware.__version__
    assert _version.__version_tuple__ == _version.version_tuple
    numbers = re.match(r"(\d+)\.(\d+)\.(\d+)", _version.version).groups()
    assert _version.version_tuple[:3] == tuple(int(n) for n in numbers)
    namespace: dict = {}
    exec("from koa_middleware._version import *", namespace)
    assert {"version", "version_tuple", "__version__"} <= set(namespace)


def test_selectors_written_against_the_original_import_the_database_from_selector_base():
    namespace: dict = {}
    exec(
        "from koa_middleware.selector_base import CalibrationSelector, LocalCalibrationDB\n"
        "class Dark(CalibrationSelector):\n"
        "    def get_candidates(self, meta, db: LocalCalibrationDB):\n"
        "        return db.query(cal_type='dark')\n",
        namespace,
    )
    from koa_middleware.database import LocalCalibrationDB

    assert namespace["LocalCalibrationDB"] is LocalCalibrationDB
    assert issubclass(namespace["Dark"], koa_middleware.CalibrationSelector)

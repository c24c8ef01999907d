"""Sphinx configuration of the koa_middleware documentation.

Build with warnings as errors::

    python3 -m sphinx -W -b html docs docs/_build/html

The API reference (``api.rst``) is filled in at build time with one section per
public module of the package, so a new module is documented without editing it.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

sys.path.insert(0, os.path.abspath(".."))

import koa_middleware  # noqa: E402

project = "koa_middleware"
author = "koa_middleware developers"
copyright = "the koa_middleware developers"
release = koa_middleware.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "numpydoc"]
exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "alabaster"
html_static_path: list[str] = []

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# Module groups of the API reference, in reading order; modules not listed go
# under "Other modules" so that none is ever left out.
API_GROUPS = {
    "Calibration store": [
        "koa_middleware",
        "koa_middleware.store",
        "koa_middleware.selector_base",
        "koa_middleware.selectors",
        "koa_middleware.selector_options",
        "koa_middleware.manifest",
        "koa_middleware.datamodel_protocol",
        "koa_middleware.fits",
        "koa_middleware.fits_headers",
        "koa_middleware.errors",
        "koa_middleware.config",
    ],
    "Local cache": [
        "koa_middleware.database",
        "koa_middleware.database.local_database",
        "koa_middleware.database.reading",
        "koa_middleware.sqlite_wal",
        "koa_middleware.records",
        "koa_middleware.timestamps",
        "koa_middleware.profiles",
        "koa_middleware.cache",
        "koa_middleware.cache.registration",
        "koa_middleware.cache.registration_steps",
        "koa_middleware.cache.lookup",
        "koa_middleware.cache.versions",
        "koa_middleware.cache.layout",
        "koa_middleware.cache.staging",
        "koa_middleware.cache.lifecycle",
        "koa_middleware.cache.prune",
        "koa_middleware.cache.locks",
        "koa_middleware.cache.permissions",
        "koa_middleware.cache.readonly",
        "koa_middleware.database.selection_view",
        "koa_middleware.cache.report",
        "koa_middleware.hashing",
    ],
    "Archive client": [
        "koa_middleware.client",
        "koa_middleware.client.remote_database",
        "koa_middleware.client.downloads",
        "koa_middleware.client.progress",
        "koa_middleware.client.sync",
        "koa_middleware.client.push",
        "koa_middleware.client.archive_side",
        "koa_middleware.client.auth",
        "koa_middleware.client.keck_login",
    ],
    "Names of the reference implementation": [
        "koa_middleware.utils",
        "koa_middleware.client.download",
        "koa_middleware.client.keck_client",
    ],
    "Command line (koa-cal)": [
        "koa_middleware.cli",
        "koa_middleware.cli.commands",
        "koa_middleware.cli.cache_commands",
        "koa_middleware.cli.archive_commands",
        "koa_middleware.cli.register_command",
        "koa_middleware.cli.lifecycle_commands",
        "koa_middleware.cli.support",
        "koa_middleware.cli.output",
        "koa_middleware.cli.demo",
    ],
    "Archive service (koa-archive)": ["koa_middleware.archive"],
}
# The reference implementation's module paths: each is a module documented elsewhere.
_SKIPPED_MODULES = {
    "koa_middleware.download",
    "koa_middleware.keck_client",
    "koa_middleware.database.remote_database",
}
# Packages that re-export their modules' names: their own docstring only, so that
# every object is documented once, under the module that defines it.
_DOCSTRING_ONLY = {"koa_middleware", "koa_middleware.database", "koa_middleware.archive"}


def _public_modules() -> list[str]:
    names = ["koa_middleware"]
    for info in pkgutil.walk_packages(koa_middleware.__path__, "koa_middleware."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if info.name not in _SKIPPED_MODULES:
            names.append(info.name)
    return sorted(names)


def _api_source() -> str:
    modules = _public_modules()
    grouped: dict[str, list[str]] = {}
    placed: set[str] = set()
    for title, prefixes in API_GROUPS.items():
        members = []
        for prefix in prefixes:
            for name in modules:
                exact = name == prefix
                below = prefix == "koa_middleware.archive" and name.startswith(prefix)
                if (exact or below) and name not in placed:
                    members.append(name)
                    placed.add(name)
        grouped[title] = members
    grouped["Other modules"] = [name for name in modules if name not in placed]
    lines = [
        "API reference",
        "=============",
        "",
        "Every public module of the package, with its classes and functions.",
        "",
    ]
    for title, members in grouped.items():
        if not members:
            continue
        lines += [title, "-" * len(title), ""]
        for name in members:
            importlib.import_module(name)  # a module that cannot be imported fails the build
            lines += [f"``{name}``", "~" * (len(name) + 4), "", f".. automodule:: {name}"]
            if name in _DOCSTRING_ONLY:
                lines.append("   :no-members:")
            lines.append("")
    return "\n".join(lines)


def _fill_api(app, docname, source) -> None:
    if docname == "api":
        source[0] = _api_source()


def setup(app):
    app.connect("source-read", _fill_api)

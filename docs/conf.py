"""Sphinx configuration of the koa_middleware documentation.

Build with warnings as errors::

    python3 -m sphinx -W -b html docs docs/_build/html

The API reference (``api.rst``) is filled in at build time from ``API_GROUPS``:
the public API only. Other modules are internal and are not published.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
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

# The public API, in reading order: the package's own names and the modules that
# pipelines written for the reference implementation import. Every other module
# is internal and is left out of the reference.
API_GROUPS = {
    "Calibration store": [
        "koa_middleware",
        "koa_middleware.store",
        "koa_middleware.selector_base",
        "koa_middleware.selectors",
        "koa_middleware.manifest",
        "koa_middleware.fits",
        "koa_middleware.profiles",
        "koa_middleware.config",
        "koa_middleware.errors",
    ],
    "Calibration databases": [
        "koa_middleware.database.local_database",
        "koa_middleware.database.remote_database",
    ],
    "Keck Observatory Archive": [
        "koa_middleware.download",
        "koa_middleware.keck_client",
    ],
    "Helpers of the reference implementation": ["koa_middleware.utils"],
}
# Where the package's names defined in internal modules are documented: the module
# path of the reference implementation, which is that very module.
_PUBLIC_PATHS = {
    "koa_middleware.client.download": "koa_middleware.download",
    "koa_middleware.client.keck_client": "koa_middleware.keck_client",
    "koa_middleware.client.remote_database": "koa_middleware.database.remote_database",
}
# Modules whose classes are built from internal parts: the methods they inherit are
# documented with them, and their internal bases are not named.
_WHOLE_CLASSES = {
    "koa_middleware.store",
    "koa_middleware.database.local_database",
    "koa_middleware.database.remote_database",
}
_INTRODUCTION = """\
API reference
=============

The public API: the names the package exports (``from koa_middleware import
...``) and the modules that pipelines written for the reference implementation
import, each with its classes and functions.

Every other module (``koa_middleware.cache``, ``koa_middleware.client``,
``koa_middleware.cli``, ``koa_middleware.archive`` and the rest) is internal: its
contents may change or move in any release without notice. Import from the modules
listed here.
"""


def _role(value: object) -> str:
    if inspect.isclass(value):
        return "class"
    return "func" if callable(value) else "data"


def _package_names() -> str:
    """The section of the package: each exported name, linked to where it is documented.

    A name defined in a module not published here is documented in place, under
    its package name. Names that are not the package's own (``datetime``,
    ``logger``, modules) are not part of its API.
    """
    documented = {module for modules in API_GROUPS.values() for module in modules}
    lines = ["The package's own names, each documented in its module:", ""]
    in_place = []
    for name, module in sorted(koa_middleware._EXPORTS.items()):
        value = getattr(koa_middleware, name)
        if not module.startswith("koa_middleware.") or isinstance(value, logging.Logger):
            continue
        module = _PUBLIC_PATHS.get(module, module)
        if module in documented:
            lines.append(f"- ``{name}``: :{_role(value)}:`{module}.{name}`")
        else:
            in_place.append(name)
    lines.append("")
    for name in in_place:
        kind = "class" if _role(getattr(koa_middleware, name)) == "class" else "function"
        lines += [f".. auto{kind}:: koa_middleware.{name}", ""]
    return "\n".join(lines)


def _api_source() -> str:
    lines = [_INTRODUCTION]
    for title, members in API_GROUPS.items():
        lines += [title, "-" * len(title), ""]
        for name in members:
            importlib.import_module(name)  # a module that cannot be imported fails the build
            lines += [f"``{name}``", "~" * (len(name) + 4), "", f".. automodule:: {name}"]
            if name in _WHOLE_CLASSES:
                lines += ["   :inherited-members:", "   :no-show-inheritance:"]
            if name == "koa_middleware":
                lines += ["   :no-members:", "", _package_names()]
            lines.append("")
    return "\n".join(lines)


def _fill_api(app, docname, source) -> None:
    if docname == "api":
        source[0] = _api_source()


def setup(app):
    app.connect("source-read", _fill_api)
    app.add_directive("koa-profile", _profile_directive())


# -- the shipped instrument profiles (profiles.rst) ------------------------------------
def _profile_source(name: str) -> str:
    """reStructuredText of the shipped profile ``name`` (``HISPEC``), from the profile."""
    from koa_middleware import profiles
    from koa_middleware.cli.profile_view import describe_profile

    data = describe_profile(getattr(profiles, name))
    literal = ", ".join
    lines = [
        f":Instrument: ``{data['instrument']}``",
        f":Registered as: entry point ``{data['instrument']}`` of the group "
        f"``{profiles.ENTRY_POINT_GROUP}``: ``koa_middleware.profiles:{name}``",
        ":Calibration types: " + (literal(f"``{t}``" for t in data["cal_types"]) or "any"),
    ]
    for cal_type, columns in data["families"].items():
        label = "Version family" if cal_type == "default" else f"Version family of {cal_type}"
        lines.append(f":{label}: " + literal(f"``{c}``" for c in columns))
    required = data["required"]
    lines.append(
        ":Required columns: "
        + (
            "; ".join(f"{t}: " + literal(f"``{c}``" for c in cols) for t, cols in required.items())
            or "none beyond the record rules"
        )
    )
    lines.append(
        f":Coverage gaps: more than {data['gap_nights']} nights without a record (``gap_nights``)"
    )
    lines += [
        "",
        ".. list-table:: Header map: record column and the FITS keywords read for it, "
        "first present wins",
        "   :header-rows: 1",
        "",
        "   * - column",
        "     - keywords",
        "     - type",
        "     - set by",
    ]
    for row in data["header_map"]:
        lines += [
            f"   * - ``{row['column']}``",
            "     - " + literal(f"``{k}``" for k in row["keywords"]),
            f"     - {row['type'] or 'as read'}",
            f"     - {'this profile' if row['from'] == 'profile' else 'default map'}",
        ]
    return "\n".join(lines) + "\n"


def _profile_directive():
    from docutils import nodes
    from docutils.parsers.rst import Directive
    from docutils.statemachine import StringList

    class ShippedProfile(Directive):
        """``.. koa-profile:: HISPEC``: the profile's tables, built from the profile."""

        required_arguments = 1

        def run(self):
            container = nodes.container()
            source = StringList(_profile_source(self.arguments[0]).splitlines(), "profiles")
            self.state.nested_parse(source, self.content_offset, container)
            return container.children

    return ShippedProfile

"""An instrument profile as people read it: ``koa-cal config --profile`` and the guide.

:func:`describe_profile` turns a profile into plain data (the header map merged with
the default one, as FITS headers are read); :func:`render_profile` lays it out as
text. ``docs/conf.py`` builds the guide's profile pages from the same data, so the
guide shows exactly what the shipped profiles hold.

Examples
--------
>>> from koa_middleware.profiles import HISPEC
>>> describe_profile(HISPEC)["header_map"][4]
{'column': 'spectrograph', 'keywords': ['SPECTROG', 'SPEC'], 'type': 'str', 'from': 'profile'}
"""

from __future__ import annotations

import logging
from typing import Any

from ..fits_headers import DEFAULT_HEADER_MAP
from ..profiles import InstrumentProfile

logger = logging.getLogger(__name__)

__all__ = ["describe_profile", "render_profile"]


def describe_profile(profile: InstrumentProfile) -> dict[str, Any]:
    """Plain data (JSON-ready) of everything ``profile`` says.

    Returns
    -------
    dict
        ``instrument``, ``source``, ``cal_types`` (empty: any), ``families``
        (``default`` and each named type), ``header_map`` (one row per column:
        ``column``, ``keywords`` tried in order, ``type`` or ``""``, ``from``:
        ``profile`` or ``default``; the default map with the profile's changes),
        ``column_types`` of columns the map does not name, and ``required``
        (type -> columns), ``gap_nights`` (the coverage map's gap threshold).
    """
    merged: dict[str, tuple[str, ...]] = dict(DEFAULT_HEADER_MAP)
    for column, keywords in profile.header_map.items():
        if keywords:
            merged[column] = tuple(keywords)
        else:  # the profile removes the default mapping
            merged.pop(column, None)
    header_map = [
        {
            "column": column,
            "keywords": list(keywords),
            "type": profile.column_types.get(column, ""),
            "from": "profile" if column in profile.header_map else "default",
        }
        for column, keywords in merged.items()
    ]
    families = {"default": list(profile.default_family)}
    families.update({cal_type: list(cols) for cal_type, cols in profile.families.items()})
    return {
        "instrument": profile.instrument,
        "source": profile.source,
        "cal_types": list(profile.cal_types),
        "families": families,
        "header_map": header_map,
        "column_types": {c: t for c, t in profile.column_types.items() if c not in merged},
        "required": {cal_type: list(cols) for cal_type, cols in profile.required.items()},
        "gap_nights": profile.gap_nights,
    }


def render_profile(data: dict[str, Any]) -> str:
    """The text ``koa-cal config --profile`` prints for :func:`describe_profile` data."""
    lines = [
        f"instrument:  {data['instrument']}",
        f"from:        {data['source']}",
        f"cal types:   {', '.join(data['cal_types']) or 'any'}",
        "families:",
    ]
    for cal_type, columns in data["families"].items():
        others = "(other types)" if len(data["families"]) > 1 else "(every type)"
        name = others if cal_type == "default" else cal_type
        lines.append(f"  {name}: {', '.join(columns)}")
    lines.append("required columns:")
    required = data["required"] or {"(none)": []}
    lines += [
        f"  {cal_type}: {', '.join(cols)}".rstrip(": ") for cal_type, cols in required.items()
    ]
    if "gap_nights" in data:
        lines.append(f"coverage gaps: more than {data['gap_nights']} nights without a record")
    lines.append("header map (record column <- FITS keywords, first present wins):")
    width = max(len(row["column"]) for row in data["header_map"]) if data["header_map"] else 0
    for row in data["header_map"]:
        notes = [n for n in (row["type"], "from the profile" if row["from"] == "profile" else "")]
        note = ", ".join(n for n in notes if n)
        lines.append(
            f"  {row['column']:<{width}} <- {', '.join(row['keywords'])}"
            + (f"  ({note})" if note else "")
        )
    for column, type_name in data["column_types"].items():
        lines.append(f"  {column:<{width}}    (no keyword; {type_name})")
    return "\n".join(lines)

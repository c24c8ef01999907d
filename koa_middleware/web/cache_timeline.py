"""The timeline's queries on a local cache's SQLite table.

The caller hands over the records' table (quoted), the lifecycle join, the
WHERE clause of the page's filters with its bound values, and the table's
columns; a facet column the table lacks reads as NULL (no record has it). Time
bins are computed in SQL from ``julianday``, so 100,000 records come back as a
few hundred counts.

Examples
--------
>>> cache_lanes(select, source, ["spectrograph"])  # doctest: +SKIP
[LaneCount(facets=('yJ',), cal_type='dark', records=12, retracted=1, ...)]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..database.reading import quote_identifier
from ..records import validate_column_name
from .timeline_data import BinCount, LaneCount, Mark

logger = logging.getLogger(__name__)

__all__ = ["CacheSource", "cache_bins", "cache_lanes", "cache_marks"]

#: ``julianday`` of 1970-01-01T00:00:00 (SQLite's days to Unix seconds).
_UNIX_JULIAN_DAY = 2440587.5

Select = Callable[[str, list[Any]], list[tuple]]


class CacheSource(NamedTuple):
    """Where the matching records are: ``FROM`` (table ``t`` and its joins), ``WHERE``, values."""

    from_sql: str
    where: str
    params: list[Any]
    columns: frozenset[str]


def _facets(source: CacheSource, facets: Sequence[str]) -> str:
    """The facet columns as text (``NULL`` for a column the table lacks), comma-first."""
    parts = []
    for name in facets:
        if validate_column_name(name) in source.columns:
            parts.append(f", CAST(t.{quote_identifier(name)} AS TEXT)")
        else:
            parts.append(", NULL")
    return "".join(parts)


def cache_lanes(select: Select, source: CacheSource, facets: Sequence[str]) -> list[LaneCount]:
    """Calibrations per facet values and ``cal_type``, with their first and last time."""
    n = len(facets)
    keys = ", ".join(str(k) for k in range(1, n + 2))
    sql = (
        f"SELECT t.cal_type{_facets(source, facets)}, COUNT(*), COUNT(r.id), "  # noqa: S608
        f"MIN(t.datetime_obs), MAX(t.datetime_obs) FROM {source.from_sql} "
        f"WHERE {source.where} GROUP BY {keys}"
    )
    return [
        LaneCount(tuple(row[1 : n + 1]), row[0], row[n + 1], row[n + 2], row[n + 3], row[n + 4])
        for row in select(sql, source.params)
    ]


def cache_marks(
    select: Select, source: CacheSource, facets: Sequence[str], limit: int
) -> list[Mark]:
    """The first ``limit`` matching calibrations by time, as marks."""
    sql = (
        "SELECT t.id, t.filename, t.cal_type, t.datetime_obs, t.cal_version, "  # noqa: S608
        f"r.id IS NOT NULL{_facets(source, facets)} FROM {source.from_sql} "
        f"WHERE {source.where} ORDER BY t.datetime_obs, t.id LIMIT {int(limit)}"
    )
    return [Mark(*row[:5], bool(row[5]), tuple(row[6:])) for row in select(sql, source.params)]


def cache_bins(
    select: Select, source: CacheSource, facets: Sequence[str], start: float, width: float
) -> list[BinCount]:
    """Calibrations per lane and time bin: bin ``i`` holds ``start + i*width`` onwards (s)."""
    n = len(facets)
    index = f"CAST(((julianday(t.datetime_obs) - {_UNIX_JULIAN_DAY}) * 86400.0 - ?) / ? AS INTEGER)"
    keys = ", ".join(str(k) for k in range(1, n + 3))
    sql = (
        f"SELECT t.cal_type{_facets(source, facets)}, {index}, COUNT(*), "  # noqa: S608
        f"COUNT(r.id) FROM {source.from_sql} WHERE {source.where} GROUP BY {keys}"
    )
    return [
        BinCount(tuple(row[1 : n + 1]), row[0], row[n + 1], row[n + 2], row[n + 3])
        for row in select(sql, [float(start), float(width), *source.params])
        if row[n + 1] is not None
    ]

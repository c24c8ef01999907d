"""The timeline's queries on the archive's catalog (SQLite or PostgreSQL).

Facet columns are the instrument profile's (checked names); an instrument
column is read from the JSON ``extra`` as text. Grouping happens on a subquery's
columns, so PostgreSQL never sees a bound parameter inside ``GROUP BY``.
Time bins are computed in SQL from seconds since 1970 (``julianday`` on SQLite,
``EXTRACT(EPOCH ...)`` on PostgreSQL), so 100,000 records come back as a few
hundred counts.

Examples
--------
>>> catalog_lanes(catalog, where, ["spectrograph"])  # doctest: +SKIP
[LaneCount(facets=('yJ',), cal_type='dark', records=12, retracted=1, ...)]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa

from ..archive.catalog import Catalog
from ..archive.schema import RECORD_COLUMNS, records
from ..records import validate_column_name
from .timeline_data import BinCount, LaneCount, Mark

logger = logging.getLogger(__name__)

__all__ = ["catalog_bins", "catalog_lanes", "catalog_marks"]

#: ``julianday`` of 1970-01-01T00:00:00 (SQLite's days to Unix seconds).
_UNIX_JULIAN_DAY = 2440587.5

Where = Sequence[sa.ColumnElement[bool]]


def _facet(name: str, is_postgres: bool) -> sa.ColumnElement:
    """The text of column ``name`` of a record: a fixed column, or one kept in ``extra``."""
    name = validate_column_name(name)
    if name in RECORD_COLUMNS:
        return sa.cast(records.c[name], sa.Text)
    if is_postgres:
        return records.c.extra.op("->>", return_type=sa.Text)(sa.literal(name))
    return sa.cast(sa.func.json_extract(records.c.extra, sa.literal(f'$."{name}"')), sa.Text)


def _base(catalog: Catalog, where: Where, facets: Sequence[str], *more: sa.ColumnElement):
    """The subquery of the matching records: facets ``f0``..., ``cal_type``, ``retracted``."""
    retracted = sa.case((records.c.retracted_at.is_not(None), 1), else_=0)
    columns = [_facet(name, catalog.is_postgres).label(f"f{n}") for n, name in enumerate(facets)]
    statement = sa.select(
        *columns, records.c.cal_type, retracted.label("retracted"), records.c.datetime_obs, *more
    ).where(*where)
    return statement.subquery("matching")


def catalog_lanes(catalog: Catalog, where: Where, facets: Sequence[str]) -> list[LaneCount]:
    """Calibrations per facet values and ``cal_type``, with their first and last time."""
    base = _base(catalog, where, facets)
    keys = [base.c[f"f{n}"] for n in range(len(facets))] + [base.c.cal_type]
    statement = sa.select(
        *keys,
        sa.func.count(),
        sa.func.sum(base.c.retracted),
        sa.func.min(base.c.datetime_obs),
        sa.func.max(base.c.datetime_obs),
    ).group_by(*keys)
    with catalog.engine.connect() as conn:
        rows = conn.execute(statement).all()
    width = len(facets)
    return [
        LaneCount(tuple(row[:width]), row[width], int(row[width + 1]), int(row[width + 2] or 0),
                  row[width + 3], row[width + 4])
        for row in rows
    ]  # fmt: skip


def catalog_marks(catalog: Catalog, where: Where, facets: Sequence[str], limit: int) -> list[Mark]:
    """The first ``limit`` matching calibrations by time, as marks."""
    columns = [_facet(name, catalog.is_postgres) for name in facets]
    statement = (
        sa.select(
            records.c.id,
            records.c.filename,
            records.c.cal_type,
            records.c.datetime_obs,
            records.c.cal_version,
            records.c.retracted_at.is_not(None),
            *columns,
        )
        .where(*where)
        .order_by(records.c.datetime_obs, records.c.id)
        .limit(limit)
    )
    with catalog.engine.connect() as conn:
        rows = conn.execute(statement).all()
    return [Mark(*row[:5], bool(row[5]), tuple(row[6:])) for row in rows]


def catalog_bins(
    catalog: Catalog, where: Where, facets: Sequence[str], start: float, width: float
) -> list[BinCount]:
    """Calibrations per lane and time bin: bin ``i`` holds ``start + i*width`` onwards (s)."""
    if catalog.is_postgres:
        seconds = sa.extract("epoch", sa.cast(records.c.datetime_obs, sa.DateTime))
        index = sa.func.floor((seconds - start) / width)
    else:
        days = sa.func.julianday(records.c.datetime_obs) - _UNIX_JULIAN_DAY
        index = sa.cast((days * 86400.0 - start) / width, sa.Integer)
    base = _base(catalog, where, facets, index.label("bin"))
    keys = [base.c[f"f{n}"] for n in range(len(facets))] + [base.c.cal_type, base.c.bin]
    statement = sa.select(*keys, sa.func.count(), sa.func.sum(base.c.retracted)).group_by(*keys)
    with catalog.engine.connect() as conn:
        rows = conn.execute(statement).all()
    n = len(facets)
    return [
        BinCount(tuple(row[:n]), row[n], int(row[n + 1]), int(row[n + 2]), int(row[n + 3] or 0))
        for row in rows
        if row[n + 1] is not None
    ]

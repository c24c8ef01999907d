"""The query filters of PROTOCOL.md (``query``) as SQLAlchemy conditions on ``records``.

Named filters (``cal_id``, ``date_time_start``, ``cal_version_min``, ...) map to the
record columns; any other name is an equality filter on an instrument column kept in
the JSON ``extra``, compared as text, or as a number when the value reads as one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from ..errors import InvalidRecordError
from ..records import (
    BOOLEAN_COLUMNS,
    ascii_int,
    normalize_bool,
    normalize_timestamp,
    normalize_version,
    validate_cal_id,
    validate_column_name,
)
from .problems import BadRequest, shorten
from .schema import records, seq_counters

logger = logging.getLogger(__name__)

__all__ = ["CATALOG_SEQ", "conditions", "query_statement"]

#: Label of the column that :func:`query_statement` adds with ``with_catalog_seq``.
CATALOG_SEQ = "koa_catalog_seq"

_RANGES = {
    "date_time_start": ("datetime_obs", ">="),
    "date_time_end": ("datetime_obs", "<="),
    "last_updated_start": ("last_updated", ">"),
    "last_updated_end": ("last_updated", "<="),
    "cal_version_min": ("cal_version", ">="),
    "cal_version_max": ("cal_version", "<="),
}


def conditions(filters: Mapping[str, str], is_postgres: bool) -> list[sa.ColumnElement[bool]]:
    """Return the conditions of ``filters``, combined with AND by the caller.

    Raises
    ------
    BadRequest
        If a filter name or value is invalid; the message names the parameter.
    """
    found = []
    for name, value in filters.items():
        try:
            found.append(_condition(name, value, is_postgres))
        except (ValueError, OverflowError) as exc:  # InvalidRecordError is a ValueError
            raise BadRequest(f"Query parameter {name!r}: {exc}") from None
    return found


def query_statement(
    instrument: str,
    filters: Mapping[str, str],
    is_postgres: bool,
    limit: int | None = None,
    offset: int | None = None,
    include_retracted: bool = False,
    *,
    after: tuple[str, str] | None = None,
    with_catalog_seq: bool = False,
) -> sa.Select:
    """Return the SELECT of the ``query`` route: matching rows by ``last_updated``, then ``id``.

    Retracted records match only with ``include_retracted`` (v2 ``include_retracted=1``);
    by default a query shows what may be used, as v1 clients expect.

    Parameters
    ----------
    instrument, filters, is_postgres, limit, offset, include_retracted
        The query.
    after : (str, str) | None
        Only the rows whose ``(last_updated, id)`` comes after this: where an earlier
        page ended (:mod:`.page_marks`), found through an index rather than skipped.
    with_catalog_seq : bool
        Add the instrument's ``seq`` counter to every row (column :data:`CATALOG_SEQ`),
        read in the statement's own snapshot.

    Raises
    ------
    BadRequest
        If a filter name or value is invalid.
    """
    columns: list = [records]
    if with_catalog_seq:
        counter = (
            sa.select(seq_counters.c.last_seq)
            .where(seq_counters.c.instrument == instrument)
            .scalar_subquery()
        )
        columns.append(counter.label(CATALOG_SEQ))
    statement = (
        sa.select(*columns)
        .where(records.c.instrument == instrument, *conditions(filters, is_postgres))
        .order_by(records.c.last_updated, records.c.id)
    )
    if after is not None:
        statement = statement.where(
            sa.tuple_(records.c.last_updated, records.c.id) > sa.tuple_(*after)
        )
    if not include_retracted:
        statement = statement.where(records.c.retracted_at.is_(None))
    if limit is not None:
        statement = statement.limit(limit)
    if offset:
        statement = statement.offset(offset)
    return statement


def _condition(name: str, value: str, is_postgres: bool) -> sa.ColumnElement[bool]:
    c = records.c
    if name in _RANGES:
        field, op = _RANGES[name]
        bound = (
            normalize_version(value) if field == "cal_version" else normalize_timestamp(value, name)
        )
        return c[field].op(op)(bound)
    if name in ("cal_id", "id"):
        return c.id == validate_cal_id(value)
    if name in ("datetime_obs", "last_updated"):
        return c[name] == normalize_timestamp(value, name)
    if name == "cal_version":
        return c.cal_version == normalize_version(value)
    if name == "origin":
        return c.origin == value.strip().upper()
    if name == "file_md5":
        return c.file_md5 == value.lower()
    if name in ("file_size", "seq"):
        return c[name] == whole_number(value)
    if name in ("filename", "cal_type"):
        return c[name] == value
    return _extra_condition(validate_column_name(name), value, is_postgres)


def whole_number(value: str) -> int:
    """Read a signed 64-bit whole number written in ASCII digits, of any length.

    Raises
    ------
    InvalidRecordError
        If it is not one (never a ValueError about too many digits).

    Examples
    --------
    >>> whole_number("-12")
    -12
    """
    number = ascii_int(value.strip(), signed=True)
    if number is None:
        raise InvalidRecordError(f"{shorten(value, 40)!r} is not a whole number within 64 bits.")
    return number


def _extra_condition(name: str, value: str, is_postgres: bool) -> sa.ColumnElement[bool]:
    """Equality on an instrument column kept in ``extra``: as text, or as a number."""
    number = _as_number(normalize_bool(value, name) if name in BOOLEAN_COLUMNS else value)
    extra = records.c.extra
    if is_postgres:
        text = extra.op("->>", return_type=sa.Text)(sa.literal(name))
        kind = sa.func.jsonb_typeof(extra.op("->")(sa.literal(name)))
        as_number = sa.case((kind == "number", sa.cast(text, sa.Float)))
    else:
        path = sa.literal(f'$."{name}"')
        kind = sa.func.json_type(extra, path)
        text = sa.cast(sa.func.json_extract(extra, path), sa.Text)
        as_number = sa.case((kind.in_(["integer", "real"]), sa.func.json_extract(extra, path)))
    condition = text == value
    if number is not None:
        condition = sa.or_(condition, as_number == number)
    return condition


def _as_number(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None

"""Equality filters on any column of the records, read from a page's GET parameters.

As the archive API's ``query`` takes them: a parameter named after a column is an
equality filter on it (``?spectrograph=yJ``). The page's form, which cannot name a
parameter after a chosen column, sends the pair ``where.column`` / ``where.value``
instead; it reads as the same filter, and every link the page makes spells it the
API's way. A name is checked against the source's columns (any case, as the
columns are compared) before it can reach SQL; anything else is refused.

Examples
--------
>>> column_filters({"spectrograph": "yJ", "sort": "filename"}, ["id", "spectrograph"], ())
{'spectrograph': 'yJ'}
>>> column_filters({"where.column": "SPECTROGRAPH", "where.value": "HK"}, ["spectrograph"], ())
{'spectrograph': 'HK'}
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from ..database.reading import quote_identifier
from ..errors import InvalidRecordError
from ..records import (
    BOOLEAN_COLUMNS,
    ascii_int,
    normalize_bool,
    normalize_version,
    validate_cal_id,
    validate_column_name,
)
from ..timestamps import normalize_timestamp

logger = logging.getLogger(__name__)

__all__ = [
    "PAGE_PARAMS",
    "WHERE_COLUMN",
    "WHERE_VALUE",
    "column_condition",
    "column_filters",
    "filterable",
    "normalize_value",
]

#: The form's pair: a column chosen from a list, and the value it must equal.
#: A dot is in no column name, so these never stand for a column.
WHERE_COLUMN, WHERE_VALUE = "where.column", "where.value"
#: GET parameters of the pages that are not column filters (a column of one of
#: these names can be filtered on through the API, not through the pages).
PAGE_PARAMS = frozenset(
    {"sort", "order", "limit", "after", "include_retracted", WHERE_COLUMN, WHERE_VALUE}
)
#: Columns every record has as text: compared as text only.
_TEXT_COLUMNS = frozenset(
    {"id", "filename", "cal_type", "datetime_obs", "origin", "cal_version", "last_updated"}
)
#: Column names listed in a refusal at most.
_LISTED = 30


def column_filters(
    params: Mapping[str, str], known: Iterable[str], named: Collection[str]
) -> dict[str, str]:
    """The column filters of ``params``: stored column name -> normalized value.

    Parameters
    ----------
    params : Mapping[str, str]
        The page's GET parameters.
    known : iterable of str
        The columns of the source's records.
    named : collection of str
        Parameters read elsewhere (``cal_type``, ``date_time_start``, ...): skipped.

    Raises
    ------
    ValueError
        If a parameter names no column of the records, the pair is half filled,
        a column is given two different values, or a value does not suit its
        column; the message says which and what to send.
    """
    columns = {name.lower(): name for name in known}
    found: dict[str, str] = {}
    skipped = PAGE_PARAMS | set(named)
    wanted = [(name, params.get(name) or "") for name in params if name not in skipped]
    where = (params.get(WHERE_COLUMN) or "").strip()
    value = (params.get(WHERE_VALUE) or "").strip()
    if where and not value:
        raise ValueError(f"{WHERE_VALUE} is empty: give the value {where[:40]!r} must equal.")
    if value and not where:
        raise ValueError(f"{WHERE_VALUE} is given without {WHERE_COLUMN}: choose the column.")
    if where:
        wanted.append((where, value))
    for name, text in wanted:
        text = text.strip()
        if not text:  # a form's empty field filters nothing
            continue
        column = _column(name, columns)
        normalized = normalize_value(column, text)
        if found.setdefault(column, normalized) != normalized:
            raise ValueError(f"{column} is given two different values; keep one.")
    return found


def filterable(columns: Iterable[str]) -> list[str]:
    """The columns a page's form offers: all but those named like a page parameter."""
    return [name for name in columns if name.lower() not in PAGE_PARAMS]


def _column(name: str, columns: Mapping[str, str]) -> str:
    try:
        validate_column_name(name)
    except InvalidRecordError:
        raise ValueError(
            f"{name[:40]!r} is not a column name (letters, digits and _, not starting "
            "with a digit); filter as column=value, e.g. spectrograph=yJ."
        ) from None
    found = columns.get(name.lower())
    if found is None:
        listed = sorted(columns.values())
        more = f" and {len(listed) - _LISTED} more" if len(listed) > _LISTED else ""
        raise ValueError(
            f"No column {name!r} in these records; filter on one of "
            f"{', '.join(listed[:_LISTED])}{more}."
        )
    return found


def normalize_value(column: str, value: str) -> str:
    """``value`` as the column stores it, as the archive API's ``query`` reads it.

    Raises
    ------
    ValueError
        If the value cannot be one of the column's (a time, a version, an id, a number).

    Examples
    --------
    >>> normalize_value("origin", "keck"), normalize_value("cal_version", "2")
    ('KECK', '002')
    """
    if "\x00" in value:
        raise ValueError(f"The value of {column} holds a NUL character; type plain text.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"The value of {column} is not valid text.") from None
    if column in ("file_size", "seq"):
        number = ascii_int(value, signed=True)
        if number is None:
            raise ValueError(f"{column} must be a whole number, not {value[:40]!r}.")
        return str(number)
    try:
        if column in ("datetime_obs", "last_updated"):
            return normalize_timestamp(value, column)
        if column == "cal_version":
            return normalize_version(value)
        if column == "id":
            return str(validate_cal_id(value))
        if column in BOOLEAN_COLUMNS:
            return str(normalize_bool(value, column))
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{column}: {exc}") from None
    if column == "origin":
        return value.upper()
    if column == "file_md5":
        return value.lower()
    return value


def column_condition(column: str, value: str) -> tuple[str, list[Any]]:
    """SQL (SQLite, records table ``t``) of ``column = value``, as the archive compares.

    The column is a checked name of the table (:func:`column_filters`), quoted
    again here; the value is bound. A value that reads as a number also matches
    the number, as the archive's ``query`` does for instrument columns.

    Examples
    --------
    >>> column_condition("exptime", "30")
    ('(t."exptime" = ? OR t."exptime" = ?)', ['30', 30.0])
    """
    name = "t." + quote_identifier(validate_column_name(column))
    if column in BOOLEAN_COLUMNS:
        return f"{name} = ?", [int(value)]
    number = None if column in _TEXT_COLUMNS else _finite(value)
    if number is None:
        return f"{name} = ?", [value]
    return f"({name} = ? OR {name} = ?)", [value, number]


def _finite(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None

"""The pieces the example selectors are built from: query conditions and option parsing."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRecordError
from .records import validate_column_name

logger = logging.getLogger(__name__)

__all__ = ["Condition", "columns_option", "days_option", "format_days"]


@dataclass(frozen=True)
class Condition:
    """One condition of a selector's query.

    Attributes
    ----------
    label : str
        How a person reads it, e.g. ``"spectrograph = 'spec_a'"``.
    sql : str
        The SQL fragment, with ``:name`` placeholders only.
    params : dict
        The values of its placeholders.
    """

    label: str
    sql: str
    params: dict = field(default_factory=dict)


def columns_option(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Column names from a sequence or a comma-separated string, each validated.

    Examples
    --------
    >>> columns_option("spectrograph, instrument_era")
    ('spectrograph', 'instrument_era')
    """
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return tuple(validate_column_name(column) for column in value)


def days_option(value: Any, name: str) -> float | None:
    """A number of days >= 0 from an option (a number or text), or None for none.

    Raises
    ------
    InvalidRecordError
        If the value is not a number of days >= 0.
    """
    if value is None or value == "" or (isinstance(value, str) and value.lower() == "none"):
        return None
    try:
        days = float(value)
    except (TypeError, ValueError):
        days = -1.0
    if days < 0:
        raise InvalidRecordError(f"Invalid {name} {value!r}: give a number of days >= 0.")
    return days


def format_days(days: float) -> str:
    """A time distance a person reads at a glance: ``'2.0 h before'``, ``'3.5 d after'``."""
    size = abs(days)
    side = "before" if days < 0 else "after"
    if size < 1 / 24:
        text = f"{size * 1440:.1f} min"
    elif size < 2:
        text = f"{size * 24:.1f} h"
    else:
        text = f"{size:.1f} d"
    return f"{text} {side}" if size else "at the same time as"

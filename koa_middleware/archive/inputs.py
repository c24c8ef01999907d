"""Reading request input: query parameters, numbers, upload headers, storable values.

Every problem becomes a :class:`~.problems.BadRequest` (or 413) that says what to send.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import Request

from ..errors import InvalidRecordError
from ..records import (
    MAX_INTEGER,
    ascii_int,
    parse_bool,
    validate_cal_id,
    validate_column_name,
)
from .problems import BadRequest, shorten

logger = logging.getLogger(__name__)


def cal_id_param(value: str) -> str:
    """Return a calibration id from the request, normalized; 400 when it is not a UUID."""
    try:
        return validate_cal_id(value)
    except InvalidRecordError as exc:
        raise BadRequest(str(exc)) from None


def int_param(name: str, value: str | None, default: int, low: int, high: int | None) -> int:
    """Read an integer query parameter within ``low``..``high`` (``default`` when absent).

    Raises
    ------
    BadRequest
        If the value is not a whole number in range (64-bit at most).

    Examples
    --------
    >>> int_param("limit", "20", 1000, 1, 10000)
    20
    """
    if value is None or value == "":
        return default
    number = ascii_int(value.strip(), signed=True)
    high = MAX_INTEGER if high is None else high
    if number is None or number < low or number > high:
        bounds = f"{low}..{high}"
        raise BadRequest(
            f"Query parameter {name!r} must be a whole number {bounds}, not {shorten(value, 40)!r}."
        )
    return number


def flag_param(name: str, value: str | None) -> bool:
    """Read a yes/no query parameter (``1``/``0``, ``true``/``false``; absent is no).

    Raises
    ------
    BadRequest
        If the value is none of those words.

    Examples
    --------
    >>> flag_param("include_retracted", "1"), flag_param("include_retracted", None)
    (True, False)
    """
    if value is None or value == "":
        return False
    flag = parse_bool(value)
    if flag is None:
        raise BadRequest(
            f"Query parameter {name!r} must be 1 or 0 (true or false), not {shorten(value, 40)!r}."
        )
    return flag


def columns_param(value: str | None) -> list[str] | None:
    """Read ``columns=a,b`` into validated column names (None when absent)."""
    if not value:
        return None
    try:
        return [validate_column_name(name.strip()) for name in value.split(",") if name.strip()]
    except InvalidRecordError as exc:
        raise BadRequest(f"Query parameter 'columns': {exc}") from None


#: The largest integer both catalog databases store (signed 64 bits).


def check_storable(key: str, value: Any) -> None:
    """Refuse values the catalog databases cannot hold faithfully."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise InvalidRecordError(f"Invalid value for {key!r}: {problem}.")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidRecordError(f"Invalid value for {key!r}: {value} is not a finite number.")
    elif isinstance(value, int) and key in ("file_size",) and value > MAX_INTEGER:
        raise InvalidRecordError(f"Invalid {key} {value}: larger than {MAX_INTEGER}.")


def text_problem(value: str) -> str | None:
    """Say why a string cannot be stored (NUL, lone surrogate), or return None."""
    if "\x00" in value:
        return "it holds a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid Unicode text (lone surrogate)"
    return None


def check_filters(filters: dict[str, str]) -> None:
    """Refuse query filters holding text the catalog cannot compare (400)."""
    for name, value in filters.items():
        problem = text_problem(name) or text_problem(value)
        if problem:
            raise BadRequest(f"Query parameter {name!r}: {problem}.")


def expected_size(request: Request, declared: str | None) -> int | None:
    """Return the upload size the client declared (``X-File-Size``, else ``Content-Length``)."""
    for name, value in (
        ("X-File-Size", declared),
        ("Content-Length", request.headers.get("content-length")),
    ):
        if value is None:
            continue
        size = ascii_int(value.strip())
        if size is None:
            raise BadRequest(
                f"{name} must be a byte count (ASCII digits, below 2**63), "
                f"not {shorten(value, 40)!r}."
            )
        return size
    return None

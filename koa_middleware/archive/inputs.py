"""Reading request input: query parameters, JSON record batches, upload headers.

Every problem becomes a :class:`~.problems.BadRequest` (or 413) that says what to send.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import Request

from ..errors import InvalidRecordError
from ..records import (
    ARCHIVE_REQUIRED_FIELDS,
    SERVER_FIELDS,
    validate_cal_id,
    validate_column_name,
    validate_record,
)
from .problems import (
    BadRequest,
    PayloadTooLarge,
)

logger = logging.getLogger(__name__)


#: Largest JSON body ``add`` reads (a batch of many thousand records fits).
MAX_JSON_BYTES = 256 * 1024 * 1024


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
    try:
        number = int(value)
    except ValueError:
        number = None
    high = MAX_INT if high is None else high
    if number is None or number < low or number > high:
        bounds = f"{low}..{high}"
        raise BadRequest(
            f"Query parameter {name!r} must be a whole number {bounds}, not {value!r}."
        )
    return number


def columns_param(value: str | None) -> list[str] | None:
    """Read ``columns=a,b`` into validated column names (None when absent)."""
    if not value:
        return None
    try:
        return [validate_column_name(name.strip()) for name in value.split(",") if name.strip()]
    except InvalidRecordError as exc:
        raise BadRequest(f"Query parameter 'columns': {exc}") from None


async def read_json_body(request: Request) -> Any:
    """Read and parse a JSON request body of at most ``MAX_JSON_BYTES``.

    Raises
    ------
    PayloadTooLarge
        If the body is larger.
    BadRequest
        If it is not valid JSON.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"An add body may hold at most {MAX_JSON_BYTES} bytes; split it.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BYTES:
            raise PayloadTooLarge(f"An add body may hold at most {MAX_JSON_BYTES} bytes; split it.")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(
            f"The body is not valid JSON ({exc}); send one record object or an array of them."
        ) from None


def parse_batch(body: Any) -> list[dict[str, Any]]:
    """Validate one record or an array of them for ``add``, all or nothing.

    Returns
    -------
    list of dict
        The normalized records (server fields dropped).

    Raises
    ------
    BadRequest
        With ``errors``: the index and reason of every bad record.
    """
    items = body if isinstance(body, list) else [body]
    batch: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            record = validate_record(item, required=ARCHIVE_REQUIRED_FIELDS, drop=SERVER_FIELDS)
            for key, value in record.items():
                check_storable(key, value)
        except (ValueError, OverflowError) as exc:  # InvalidRecordError is a ValueError
            errors.append({"index": index, "reason": str(exc)})
            continue
        for key in ("id", "filename"):
            first = seen.setdefault(f"{key}:{record[key]}", index)
            if first != index:
                errors.append(
                    {"index": index, "reason": f"{key} {record[key]!r} repeats record {first}."}
                )
        batch.append(record)
    if errors:
        problem = BadRequest(
            f"{len(errors)} of {len(items)} record(s) are invalid, so none was added; "
            "fix them and send the batch again."
        )
        problem.extra = {"errors": errors}  # type: ignore[attr-defined]
        raise problem
    return batch


#: The largest integer both catalog databases store (signed 64 bits).
MAX_INT = 2**63 - 1


def check_storable(key: str, value: Any) -> None:
    """Refuse values the catalog databases cannot hold faithfully."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise InvalidRecordError(f"Invalid value for {key!r}: {problem}.")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidRecordError(f"Invalid value for {key!r}: {value} is not a finite number.")
    elif isinstance(value, int) and key in ("file_size",) and value > MAX_INT:
        raise InvalidRecordError(f"Invalid {key} {value}: larger than {MAX_INT}.")


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
        if not value.strip().isdigit():
            raise BadRequest(f"{name} must be a byte count, not {value!r}.")
        return int(value)
    return None

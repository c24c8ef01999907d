"""Timestamps of records: one UTC form, ``YYYY-MM-DDTHH:MM:SS.sss``, read from the usual ones.

Part of the record rules (:mod:`koa_middleware.records`, which re-exports them).

Examples
--------
>>> normalize_timestamp("Thu, 12 Feb 2026 00:00:00 GMT")
'2026-02-12T00:00:00.000'
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from .errors import InvalidRecordError

logger = logging.getLogger(__name__)

__all__ = ["normalize_timestamp", "utc_now"]

_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\Z")


def normalize_timestamp(value: Any, field: str = "timestamp") -> str:
    """Normalize a timestamp to UTC ``YYYY-MM-DDTHH:MM:SS.sss``.

    Accepts the ISO 8601 forms (with ``T`` or a space, any fraction, an optional
    ``Z`` or offset), the HTTP-date form (``Thu, 12 Feb 2026 00:00:00 GMT``) and
    ``datetime`` objects. Naive times are taken as UTC.

    Raises
    ------
    InvalidRecordError
        If ``value`` cannot be read as a timestamp.

    Examples
    --------
    >>> normalize_timestamp("2026-02-12T03:04:05Z")
    '2026-02-12T03:04:05.000'
    """
    if isinstance(value, str) and _ISO_RE.match(value):
        try:  # the canonical form must still name a real moment (no month 13)
            datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
        moment = None
    else:
        moment = _parse_timestamp(value)
    if moment is None:
        raise InvalidRecordError(
            f"Invalid {field} {value!r}: use UTC 'YYYY-MM-DDTHH:MM:SS.sss', "
            "e.g. '2026-02-12T03:04:05.000'."
        )
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds")


def _parse_timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def utc_now() -> str:
    """Return the current UTC time as ``YYYY-MM-DDTHH:MM:SS.sss``."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")

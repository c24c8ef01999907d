"""The Jinja2 environment of the pages: autoescaping, visible control characters, links.

Every ``{{ value }}`` passes :func:`visible` and then HTML escaping, so a record's
text can neither add markup nor send a terminal control sequence to whoever
copies it: an ESC shows as ``\\x1b``.

Examples
--------
>>> visible("\\x1b[2Jdark")
'\\\\x1b[2Jdark'
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from ..records import escape_controls

logger = logging.getLogger(__name__)

__all__ = ["CSV_COLUMNS", "csv_line", "environment", "query_url", "visible"]

#: Characters of one value shown on a page at most (the CSV and JSON twins carry all).
MAX_SHOWN_CHARS = 2000
#: Columns of the CSV twin of a browse query, in order.
CSV_COLUMNS = (
    "id",
    "filename",
    "cal_type",
    "datetime_obs",
    "origin",
    "cal_version",
    "last_updated",
    "file_md5",
    "file_size",
    "retracted_at",
    "retract_reason",
)


def visible(value: Any) -> Any:
    """Show control characters and bidirectional overrides as escapes (``\\x1b``).

    Text longer than :data:`MAX_SHOWN_CHARS` is cut there and says how long it was,
    so one huge value cannot make a page huge or slow.
    """
    if isinstance(value, Markup) or not isinstance(value, str):
        return "" if value is None else value
    if len(value) > MAX_SHOWN_CHARS:
        cut = escape_controls(value[:MAX_SHOWN_CHARS], keep="\t\n")
        return f"{cut}… [cut: {len(value):,} characters in all]"
    return escape_controls(value, keep="\t\n")


def query_url(path: str, params: Mapping[str, Any] | None = None, **more: Any) -> str:
    """``path`` with ``params`` and ``more`` as its query string (empty values left out).

    Examples
    --------
    >>> query_url("/ui/hispec/browse", {"cal_type": "dark"}, after=None, sort="filename")
    '/ui/hispec/browse?cal_type=dark&sort=filename'
    """
    merged = {**(params or {}), **more}
    pairs = [(k, str(v)) for k, v in merged.items() if v is not None and v != ""]
    return path + ("?" + urlencode(pairs) if pairs else "")


def csv_line(values: list[Any]) -> str:
    """One CSV line; a cell a spreadsheet would take for a formula is quoted with ``'``."""
    cells = []
    for value in values:
        text = "" if value is None else str(value)
        if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
            text = "'" + text
        cells.append(text)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()


def environment() -> Environment:
    """The pages' Jinja2 environment: templates of this package, everything autoescaped."""
    env = Environment(
        loader=PackageLoader("koa_middleware.web", "templates"),
        autoescape=True,
        finalize=visible,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["query_url"] = query_url
    return env

"""Serving a record's file from the pages, with ``Range`` requests (resumable downloads).

The archive has its own download route (``/api/calibrations/INST/files/ID``); a
local cache has none, so ``koa-cal ui`` serves the cached files here, at
``/ui/INST/files/ID``. Only a file the reader opens is served (for a cache: inside
its folders, a regular file, checked against its record), one byte range at most.

Examples
--------
>>> byte_range("bytes=10-", 100), byte_range("bytes=0-9", 100), byte_range("bytes=-5", 100)
((10, 100), (0, 10), (95, 100))
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import quote

from starlette.responses import Response, StreamingResponse

logger = logging.getLogger(__name__)

__all__ = ["RangeRefused", "byte_range", "file_response"]

#: Bytes read and sent per step.
CHUNK_BYTES = 1 << 16
_RANGE_RE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})\Z")


class RangeRefused(ValueError):
    """A ``Range`` header this site does not serve; ``status`` is 400 or 416."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Read one ``bytes=START-[END]`` or ``bytes=-SUFFIX`` range into ``(start, end_exclusive)``.

    Returns None without a header (the whole file).

    Raises
    ------
    RangeRefused
        400 when it is not one byte range; 416 when it starts at or past the end.
    """
    if header is None:
        return None
    match = _RANGE_RE.match(header.strip())
    if not match or not (match.group(1) or match.group(2)):
        raise RangeRefused("Send one range: 'bytes=START-', 'bytes=START-END' or 'bytes=-N'.", 400)
    first, last = match.group(1), match.group(2)
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if start >= size:
        raise _unsatisfiable(size)
    if end <= start:
        raise RangeRefused("The range ends before it starts.", 400)
    return start, end


def _unsatisfiable(size: int) -> RangeRefused:
    return RangeRefused(f"The file has {size} bytes: the download is complete.", 416)


def file_response(
    handle: BinaryIO, size: int, record: Mapping[str, Any], range_header: str | None
) -> Response:
    """The file (200) or the span of ``range_header`` (206, with ``Content-Range``).

    ``handle`` is positioned at 0 and closed when the answer is sent (or refused).
    """
    try:
        span = byte_range(range_header, size)
    except RangeRefused as exc:
        handle.close()
        headers = {"Content-Range": f"bytes */{size}"} if exc.status == 416 else {}
        return Response(str(exc), status_code=exc.status, headers=headers, media_type="text/plain")
    start, end, status = 0, size, 200
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": _attachment(record)}
    if record.get("file_md5"):
        headers["ETag"] = f'"{record["file_md5"]}"'
    if span is not None:
        start, end = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    handle.seek(start)
    return StreamingResponse(
        _chunks(handle, end - start),
        status_code=status,
        media_type="application/octet-stream",
        headers=headers,
    )


def _chunks(handle: BinaryIO, remaining: int) -> Iterator[bytes]:
    try:
        while remaining > 0:
            chunk = handle.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()


def _attachment(record: Mapping[str, Any]) -> str:
    """``attachment`` with the file name: a plain ASCII stand-in and the exact UTF-8 one."""
    name = str(record.get("filename") or record.get("id") or "calibration")[:255]
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "calibration"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"

"""Request bodies under limits: time between pieces, bytes, records per ``add``.

- :func:`body_chunks` yields a body's pieces and fails with 408 when the client
  stops sending, or sends too little, for the body timeout (a byte now and then
  does not keep a request alive).
- :func:`read_add_body` reads an ``add`` body into memory, refusing it (413) as
  soon as its declared or received length passes the limit.
- :func:`parse_add_body` parses and validates it, one record at a time, and
  refuses (413) as soon as there are more records than allowed: a huge array is
  never built, and no record larger than :data:`MAX_RECORD_BYTES` is parsed. It is
  plain CPU work: run it in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from ..records import ARCHIVE_REQUIRED_FIELDS, SERVER_FIELDS, ascii_int, validate_record
from .inputs import check_storable
from .problems import BadRequest, PayloadTooLarge, RequestTimeout, invalid_batch, shorten

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_ADD_BYTES",
    "DEFAULT_MAX_ADD_RECORDS",
    "DEFAULT_BODY_TIMEOUT",
    "MIN_BODY_RATE",
    "MAX_RECORD_BYTES",
    "body_chunks",
    "read_add_body",
    "parse_add_body",
]

#: Bytes of one ``add`` body (``serve --max-add-bytes``).
DEFAULT_MAX_ADD_BYTES = 64 << 20
#: Records of one ``add`` body (``serve --max-add-records``).
DEFAULT_MAX_ADD_RECORDS = 10_000
#: Seconds over which a body must keep arriving (``serve --body-timeout``).
DEFAULT_BODY_TIMEOUT = 60.0
#: Bytes a second a body must bring, on average over each period of the body timeout.
MIN_BODY_RATE = 1024
#: Bytes of JSON text of one record: 500 columns of 2 KiB each.
MAX_RECORD_BYTES = 1 << 20
#: Bytes parsed at first for one record; doubled up to MAX_RECORD_BYTES when it is longer.
_FIRST_WINDOW = 64 << 10
_SPACE = re.compile(rb"[ \t\n\r]*")
_decoder = json.JSONDecoder()


async def body_chunks(request: Request, timeout: float | None) -> AsyncIterator[bytes]:
    """Yield the pieces of a request body as they arrive, dropping a body that stalls.

    The body is watched in periods of ``timeout`` seconds from its start: a period in
    which fewer than :data:`MIN_BODY_RATE` bytes a second arrive ends the request,
    unless the body ended in it. So a client that sends nothing, or a byte now and
    then, is dropped after at most two periods, while a large upload at any useful
    rate goes on for as long as it needs; a body smaller than one period's minimum
    must arrive whole within ``timeout``.

    Raises
    ------
    RequestTimeout
        When a period brings too little (``timeout`` None: wait for ever).
    """
    stream = request.stream()
    if timeout is None:
        async for chunk in stream:
            yield chunk
        return
    loop = asyncio.get_running_loop()
    least = MIN_BODY_RATE * timeout
    period_end, received = loop.time() + timeout, 0
    while True:
        # A period that already brought enough can only fail at the end of the next one.
        wait_until = period_end if received < least else period_end + timeout
        try:
            async with asyncio.timeout_at(wait_until):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _stalled(request, timeout, received) from None
        while loop.time() >= period_end:
            if received < least:
                raise _stalled(request, timeout, received)
            period_end, received = period_end + timeout, 0
        received += len(chunk)
        yield chunk


def _stalled(request: Request, timeout: float, received: int) -> RequestTimeout:
    logger.warning(
        "%s %s: the client sent %d body bytes in %g s, less than %d; closing the connection",
        request.method,
        request.url.path,
        received,
        timeout,
        int(MIN_BODY_RATE * timeout),
    )
    return RequestTimeout(
        f"The request body arrived too slowly: less than {MIN_BODY_RATE} bytes a second over "
        f"{timeout:g} seconds, so the archive stopped waiting; send the request again.",
        headers={"Connection": "close"},
    )


def _too_large(limit: int, route: str) -> PayloadTooLarge:
    if route == "add":
        advice = (
            "split the records into smaller batches (or ask the operator to raise --max-add-bytes)."
        )
    else:
        advice = "send the ids in several requests."
    return PayloadTooLarge(
        f"A {route} request may hold at most {limit} bytes; {advice}",
        headers={"Connection": "close"},
    )


async def read_add_body(
    request: Request, limit: int, timeout: float | None, route: str = "add"
) -> bytearray:
    """Read an ``add`` body (or that of another JSON route, ``route``) of at most ``limit`` bytes.

    Raises
    ------
    PayloadTooLarge
        Before reading anything when ``Content-Length`` passes ``limit``, else as
        soon as the received bytes do.
    RequestTimeout
        When the body stalls for ``timeout`` seconds (see :func:`body_chunks`).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        size = ascii_int(declared.strip())
        if size is None or size > limit:
            raise _too_large(limit, route)
    data = bytearray()
    async for chunk in body_chunks(request, timeout):
        if len(data) + len(chunk) > limit:
            raise _too_large(limit, route)
        data += chunk
    return data


def parse_add_body(data: bytes | bytearray, max_records: int) -> list[dict[str, Any]]:
    """Parse and validate an ``add`` body (one record or an array of them), all or nothing.

    Parameters
    ----------
    data : bytes or bytearray
        The body, UTF-8 JSON.
    max_records : int
        Records one request may hold.

    Returns
    -------
    list of dict
        The normalized records (server fields dropped).

    Raises
    ------
    BadRequest
        If the body is not JSON, or records break a rule: the answer lists the first
        errors (index and reason) and counts them all.
    PayloadTooLarge
        As soon as the array holds more than ``max_records`` records.
    """
    view = memoryview(data)
    pos = _skip_space(data, 0)
    if pos < len(data) and data[pos] == ord("["):
        items = _array_items(data, view, pos + 1, max_records)
    else:
        item, pos = _parse_value(data, view, pos, 0)
        if _skip_space(data, pos) != len(data):
            raise _not_json("extra data after the record", pos)
        items = iter([item])
    batch: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: dict[tuple[str, Any], int] = {}
    count = 0
    for index, item in enumerate(items):
        count = index + 1
        try:
            record = validate_record(item, required=ARCHIVE_REQUIRED_FIELDS, drop=SERVER_FIELDS)
            for key, value in record.items():
                check_storable(key, value)
        except (ValueError, OverflowError) as exc:  # InvalidRecordError is a ValueError
            errors.append({"index": index, "reason": shorten(str(exc))})
            continue
        for key in ("id", "filename"):
            first = seen.setdefault((key, record[key]), index)
            if first != index:
                reason = f"{key} {record[key]!r} repeats record {first}."
                errors.append({"index": index, "reason": reason})
        batch.append(record)
    if errors:
        raise invalid_batch(errors, count)
    return batch


def _array_items(data: bytes | bytearray, view: memoryview, pos: int, max_records: int):
    """Yield the elements of the array whose ``[`` is just before ``pos``, one by one."""
    pos = _skip_space(data, pos)
    if pos < len(data) and data[pos] == ord("]"):
        if _skip_space(data, pos + 1) != len(data):
            raise _not_json("extra data after the array", pos + 1)
        return
    index = 0
    while True:
        if index == max_records:
            raise PayloadTooLarge(
                f"An add request may hold at most {max_records} records; split the batch "
                "(or ask the operator to raise --max-add-records).",
                headers={"Connection": "close"},
            )
        item, pos = _parse_value(data, view, pos, index)
        yield item
        index += 1
        pos = _skip_space(data, pos)
        if pos >= len(data):
            raise _not_json("the array is not closed with ']'", pos)
        if data[pos] == ord("]"):
            if _skip_space(data, pos + 1) != len(data):
                raise _not_json("extra data after the array", pos + 1)
            return
        if data[pos] != ord(","):
            raise _not_json("expected ',' or ']' after a record", pos)
        pos = _skip_space(data, pos + 1)


def _parse_value(
    data: bytes | bytearray, view: memoryview, pos: int, index: int
) -> tuple[Any, int]:
    """Parse the JSON value at byte ``pos`` of at most MAX_RECORD_BYTES; return it and its end."""
    window = _FIRST_WINDOW
    while True:
        end = min(pos + window, len(data))
        final = end == len(data)
        try:
            text, _ = codecs.utf_8_decode(view[pos:end], "strict", final)
        except UnicodeDecodeError as exc:
            raise BadRequest(
                f"The body is not UTF-8 text (byte {pos + exc.start}); send JSON in UTF-8."
            ) from None
        try:
            value, stop = _decoder.raw_decode(text)
            # A value reaching the end of a cut window may go on (a number): read more.
            complete = final or stop < len(text)
        except json.JSONDecodeError as exc:
            if final:
                raise _not_json(exc.msg, pos + len(text[: exc.pos].encode())) from None
            complete = False
        except RecursionError:
            raise _not_json("nested too deeply", pos) from None
        except ValueError as exc:  # e.g. an integer of more than 4,300 digits
            raise _not_json(shorten(str(exc), 120), pos) from None
        if not complete:
            if window >= MAX_RECORD_BYTES:
                raise BadRequest(
                    f"Record {index} is not valid JSON or is longer than {MAX_RECORD_BYTES} "
                    "bytes, the most one record may take; fix or shorten it."
                ) from None
            window *= 2
            continue
        consumed = stop if text.isascii() else len(text[:stop].encode())
        return value, pos + consumed


def _skip_space(data: bytes | bytearray, pos: int) -> int:
    match = _SPACE.match(data, pos)
    return match.end() if match else pos


def _not_json(what: str, pos: int) -> BadRequest:
    return BadRequest(
        f"The body is not valid JSON ({what}, at byte {pos}); send one record object or an "
        "array of them."
    )

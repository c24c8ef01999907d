"""Streaming file bodies in and out of the archive, never holding a whole file in memory.

- :func:`receive_file` writes a request body to a :class:`PendingFile` in 1 MiB
  blocks (disk writes and hashing off the event loop), enforcing the upload limit.
- :func:`file_chunks` reads a stored file, or the tail of it for ``Range: bytes=N-``;
  :func:`read_span` reads a small one whole, so that it is answered without
  handing each block between threads.
- :func:`zip_chunks` wraps a stored file as the single member of a zip archive
  (v1 ``download``), built on the fly.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from ..records import ascii_int
from .catalog import StoredFile
from .problems import BadRequest, PayloadTooLarge, RangeNotSatisfiable, shorten
from .storage_interface import PendingFile

logger = logging.getLogger(__name__)

__all__ = [
    "BLOCK",
    "SMALL_FILE",
    "receive_file",
    "parse_range",
    "file_chunks",
    "read_span",
    "zip_chunks",
]

#: Bytes per disk read or write.
BLOCK = 1 << 20
#: Downloads up to this size are read whole and sent in one piece (a bound on the
#: memory each request holds, like the streamed block).
SMALL_FILE = 2 * BLOCK
#: Blocks of an upload that may wait for the writer thread.
WRITE_AHEAD = 4
_RANGE_RE = re.compile(r"^bytes=([0-9]+)-([0-9]*)\Z")


async def receive_file(
    body: AsyncIterator[bytes], pending: PendingFile, max_bytes: int | None
) -> StoredFile:
    """Write a streamed body into ``pending`` and return its MD5 and size.

    Blocks of 1 MiB go to one writer thread (hashing and disk writes release the
    GIL) while the event loop keeps receiving; at most ``WRITE_AHEAD`` blocks wait,
    so memory stays bounded whatever the file size.

    Raises
    ------
    PayloadTooLarge
        As soon as more than ``max_bytes`` arrived.
    """
    loop = asyncio.get_running_loop()
    in_flight: collections.deque[asyncio.Future] = collections.deque()
    blocks: list[bytes] = []
    buffered = received = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="koa-upload") as writer:

        async def flush() -> None:
            nonlocal blocks, buffered
            in_flight.append(loop.run_in_executor(writer, pending.write_all, blocks))
            blocks = []  # the writer thread owns the old list now
            buffered = 0
            while len(in_flight) >= WRITE_AHEAD:
                await in_flight.popleft()

        try:
            async for chunk in body:
                received += len(chunk)
                if max_bytes is not None and received > max_bytes:
                    raise PayloadTooLarge(
                        f"The upload exceeds this archive's limit of {max_bytes} bytes; "
                        "ask the operator to raise --max-upload-bytes."
                    )
                blocks.append(chunk)
                buffered += len(chunk)
                if buffered >= BLOCK:
                    await flush()
            if blocks:
                await flush()
        finally:
            # Never leave a write running against a file the caller may discard.
            waiting = list(in_flight)
            if waiting:
                await asyncio.wait(waiting)
        for future in waiting:
            future.result()  # a failed disk write fails the upload
        return await loop.run_in_executor(writer, pending.finish)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Read a single ``Range: bytes=START-[END]`` header into ``(start, end_exclusive)``.

    Returns None when there is no header (the whole file).

    Raises
    ------
    BadRequest
        If the header is not a single byte range.
    RangeNotSatisfiable
        If it starts at or past the end of the file.

    Examples
    --------
    >>> parse_range("bytes=10-", 100), parse_range("bytes=0-9", 100)
    ((10, 100), (0, 10))
    """
    if header is None:
        return None
    match = _RANGE_RE.match(header.strip())
    if not match:
        raise BadRequest(
            f"Unsupported Range {shorten(header, 60)!r}: send one range as 'bytes=START-' "
            "or 'bytes=START-END'."
        )
    # A position too long to convert lies past the end of any file.
    start = ascii_int(match.group(1))
    last = ascii_int(match.group(2)) if match.group(2) else size - 1
    end = size if last is None else last + 1
    if start is None or start >= size:
        shown = match.group(1) if start is not None else f"{match.group(1)[:20]}..."
        raise RangeNotSatisfiable(
            f"Range starts at byte {shown} but the file has {size} bytes; "
            "the download is already complete.",
            headers={"Content-Range": f"bytes */{size}"},
        )
    if end <= start:
        raise BadRequest(f"Invalid Range {shorten(header, 60)!r}: the end is before the start.")
    return start, min(end, size)


def file_chunks(handle: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """Yield bytes ``start`` to ``end`` (exclusive) of an open file, then close it."""
    try:
        handle.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = handle.read(min(BLOCK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()


def read_span(handle: BinaryIO, start: int, end: int) -> bytes:
    """Return bytes ``start`` to ``end`` (exclusive) of an open file, then close it."""
    try:
        handle.seek(start)
        return handle.read(end - start)
    finally:
        handle.close()


class _Sink:
    """A write-only, unseekable stream collecting what zipfile writes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def zip_chunks(handle: BinaryIO, member_name: str, size: int) -> Iterator[bytes]:
    """Yield a zip archive holding the open file ``handle`` as ``member_name``, then close it.

    The member is stored uncompressed: calibration files are large and a v1
    client only unpacks them.
    """
    sink = _Sink()
    try:
        with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
            info = zipfile.ZipInfo(member_name, date_time=time.gmtime()[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = size
            with archive.open(info, mode="w", force_zip64=size >= zipfile.ZIP64_LIMIT) as member:
                while chunk := handle.read(BLOCK):
                    member.write(chunk)
                    yield sink.drain()
        yield sink.drain()
    finally:
        handle.close()

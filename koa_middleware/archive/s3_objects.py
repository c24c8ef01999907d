"""One object in S3-compatible storage: receiving it in parts, reading it as it streams.

:class:`S3PendingFile` streams a file into a multipart upload at its final
key (out of sight until completed, with ``If-None-Match: *``);
:class:`S3ObjectReader` reads an object, or a byte range of it. The storage
that names the objects is :class:`.s3_storage.S3FileStorage`.

Examples
--------
>>> pending = S3PendingFile(client, "calibrations", "koa/hispec/ID")  # doctest: +SKIP
>>> pending.write(data); stored = pending.finish(); pending.complete()  # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .catalog import StoredFile
from .storage_interface import PendingFile

logger = logging.getLogger(__name__)

__all__ = ["S3PendingFile", "S3ObjectReader", "MD5_METADATA", "error_code", "is_missing"]

#: Bytes per part of a multipart upload (S3 needs at least 5 MiB, except for the last).
PART_SIZE = 8 << 20
#: Parts of one upload sent at the same time.
PARTS_IN_FLIGHT = 2
#: The part size grows by PART_SIZE every this many parts (S3 allows 10,000 parts):
#: 8 MiB parts up to 8 GB, 16 MiB up to 24 GB, ..., past 400 GB in all.
PART_GROWTH_EVERY = 1000
#: The object metadata that keeps the MD5 checked before the object was completed.
MD5_METADATA = "md5"


def error_code(exc: Exception) -> str:
    """The store's error code of a botocore error (``NoSuchKey``, ``412``, ...), or "".

    Parameters
    ----------
    exc : Exception
        Any exception; only botocore's ``ClientError`` carries a code.

    Returns
    -------
    str

    Examples
    --------
    >>> error_code(ValueError("not from the store"))
    ''
    """
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def is_missing(exc: Exception) -> bool:
    """True when ``exc`` says the object does not exist.

    Parameters
    ----------
    exc : Exception
        A botocore error.

    Returns
    -------
    bool

    Examples
    --------
    >>> is_missing(ValueError())
    False
    """
    return error_code(exc) in ("404", "NoSuchKey", "NotFound")


def _precondition_failed(exc: Exception) -> bool:
    # 409 ConditionalRequestConflict: another completion of this key is in progress.
    return error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict")


class S3PendingFile(PendingFile):
    """A file being received into a multipart upload at its final key.

    The multipart upload starts with the first full part; a smaller file is
    kept in memory (less than one part) and sent whole by :meth:`complete`.
    """

    def __init__(self, client: Any, bucket: str, key: str, md5: str | None = None):
        self.client = client
        self.bucket = bucket
        self.key = key
        self.size = 0
        self.upload_id: str | None = None
        self._metadata = {MD5_METADATA: md5} if md5 else {}
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._parts: list[dict[str, Any]] = []
        self._in_flight: deque[Future] = deque()
        self._sender: ThreadPoolExecutor | None = None
        self._finished = False
        self._done = False  # completed or aborted

    def write(self, data: bytes) -> None:
        """Append ``data`` to the file and its checksum; send each full part."""
        assert not self._finished and not self._done, "write after finish or discard"
        self._md5.update(data)
        self.size += len(data)
        self._buffer.append(bytes(data))
        self._buffered += len(data)
        while self._buffered >= self._part_size():
            self._send_part(self._take(self._part_size()))

    def finish(self) -> StoredFile:
        """Send the last part and wait for every part; return the MD5 and size."""
        assert not self._done, "finish after discard"
        if self.upload_id is not None and self._buffered:
            self._send_part(self._take(self._buffered))
        self._wait(0)
        if self._sender is not None:
            self._sender.shutdown(wait=False)  # every part is sent
        self._finished = True
        return StoredFile(self._md5.hexdigest(), self.size)

    def complete(self) -> bool:
        """Make the object visible, unless one exists; return False if one did."""
        assert self._finished and not self._done, "complete before finish or after discard"
        try:
            if self.upload_id is None:
                body = b"".join(self._take(self._buffered))
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=body,
                    Metadata=self._metadata,
                    IfNoneMatch="*",
                )
            else:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": self._parts},
                    IfNoneMatch="*",
                )
        except Exception as exc:
            if not _precondition_failed(exc):
                raise
            self.discard()
            return False
        self._done = True
        return True

    def discard(self) -> None:
        """Abort the multipart upload (if any) and drop what is buffered."""
        if self._done:
            return
        self._done = True
        self._buffer.clear()
        self._wait(0, check=False)
        if self._sender is not None:
            self._sender.shutdown(wait=True)
        if self.upload_id is not None:
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                )
            except Exception as exc:  # left for clean_incoming; never hide the first error
                logger.warning("Could not abort the upload of %s: %s", self.key, exc)

    # -- parts -------------------------------------------------------------------------
    def _part_size(self) -> int:
        return PART_SIZE * (1 + len(self._parts) // PART_GROWTH_EVERY)

    def _take(self, count: int) -> list[bytes]:
        """Remove the first ``count`` buffered bytes, as a list of blocks."""
        taken: list[bytes] = []
        needed = count
        while needed:
            block = self._buffer[0]
            if len(block) <= needed:
                taken.append(self._buffer.pop(0))
                needed -= len(block)
            else:
                taken.append(block[:needed])
                self._buffer[0] = block[needed:]
                needed = 0
        self._buffered -= count
        return taken

    def _send_part(self, blocks: list[bytes]) -> None:
        if self.upload_id is None:
            created = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, Metadata=self._metadata
            )
            self.upload_id = created["UploadId"]
            self._sender = ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="koa-s3-part")
        part = {"PartNumber": len(self._parts) + 1}
        self._parts.append(part)
        self._wait(PARTS_IN_FLIGHT - 1)
        assert self._sender is not None
        self._in_flight.append(self._sender.submit(self._upload_part, part, b"".join(blocks)))

    def _upload_part(self, part: dict[str, Any], body: bytes) -> None:
        answer = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=part["PartNumber"],
            Body=body,
        )
        part["ETag"] = answer["ETag"]
        for name in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumSHA1", "ChecksumSHA256"):
            if answer.get(name):
                part[name] = answer[name]

    def _wait(self, keep: int, check: bool = True) -> None:
        """Wait until at most ``keep`` parts are in flight; raise the first failure."""
        while len(self._in_flight) > keep:
            future = self._in_flight.popleft()
            if check:
                future.result()
            else:
                future.exception()


class S3ObjectReader(io.RawIOBase):
    """A read-only handle on an object (or a byte range of it), read as it streams.

    Seeking to another position starts a new ranged GET.

    Parameters
    ----------
    get : callable
        ``get(start, end)`` starts a GET of those bytes and returns its body
        (raising FileNotFoundError when the object is missing).
    start, end : int, int | None
        The bytes to read (``end`` exclusive; None: to the end).
    """

    def __init__(
        self, get: Callable[[int, int | None], Any], start: int = 0, end: int | None = None
    ):
        super().__init__()
        self._get = get
        self._position = start
        self._end = end
        self._body = get(start, end)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET:
            raise io.UnsupportedOperation("only absolute positions")
        if offset != self._position:
            self._body.close()
            self._position = offset
            self._body = self._get(offset, self._end)
        return self._position

    def read(self, size: int = -1) -> bytes:
        data = self._body.read(None if size is None or size < 0 else size)
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()

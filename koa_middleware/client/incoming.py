"""A file being downloaded: written under a temporary name and hashed while it grows.

:class:`IncomingFile` appends the bytes of a download to a partial file and
feeds them to an MD5, so that the download is checked without reading the file
again. The network's small chunks are gathered into blocks of about a MiB, so
each block costs one write and one hash call (and the GIL is let go of
seldom, which keeps many parallel downloads from fighting over it). For large
files the hashing runs in a second thread (``hashlib`` releases the GIL), the
disk space is reserved up front, and the bytes are written back to disk as
they arrive, so that downloading, writing, hashing and the final fsync overlap.
After :meth:`IncomingFile.close` the partial file's length is the number of
bytes received, so an interrupted download resumes from it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import queue
import sys
import threading
from pathlib import Path

from ..cache.layout import create_private_file, open_private_file

logger = logging.getLogger(__name__)

__all__ = ["IncomingFile"]

_CHUNK = 1 << 20
#: Downloads at least this large are hashed in a second thread.
_THREADED_HASH_BYTES = 16 << 20
_FALLOC_FL_KEEP_SIZE = 0x01
#: Most chunks gathered into one block (one ``writev``; the system allows 1024).
_BLOCK_CHUNKS = 64


def _load_fallocate():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return function


_fallocate = _load_fallocate()


def reserve_space(fd: int, offset: int, length: int) -> None:
    """Reserve disk space for ``length`` bytes at ``offset`` without changing the file's length.

    Writing into reserved space is much faster than growing a file, and a full
    disk is reported before any byte is downloaded. Where the system cannot
    reserve space (not Linux, or a file system without ``fallocate``), nothing
    happens.

    Raises
    ------
    OSError
        ENOSPC when the disk has not enough free space.
    """
    if _fallocate is None or length <= 0:
        return
    if _fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        code = ctypes.get_errno()
        if code == errno.ENOSPC:
            raise OSError(
                code,
                f"Not enough free disk space for {length} more bytes; free some space in "
                "the calibration cache's file system and try again.",
            )
        logger.debug("Could not reserve disk space (%s); writing without.", os.strerror(code))


def write_all(fd: int, chunks: list[bytes]) -> None:
    """Write ``chunks`` one after the other to ``fd``, with as few system calls as it takes.

    Examples
    --------
    >>> import os, tempfile
    >>> fd, name = tempfile.mkstemp()
    >>> write_all(fd, [b"ab", b"", b"cd"])
    >>> os.close(fd); open(name, "rb").read()
    b'abcd'
    """
    views = [memoryview(chunk) for chunk in chunks]
    while views:
        written = os.writev(fd, views)
        # Drop what went out; a short write leaves the rest of one chunk.
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


class _BackgroundMD5:
    """An MD5 fed by a thread of its own, one block (about a MiB) at a time."""

    def __init__(self, md5) -> None:
        self._md5 = md5
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name="koa-md5", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            for chunk in block:
                self._md5.update(chunk)  # hashlib lets go of the GIL here

    def update(self, block: list[bytes]) -> None:
        self._queue.put(block)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()


class _BackgroundFlush:
    """Writes a growing file back to disk while it grows, so the final fsync is short."""

    _EVERY_BYTES = 64 << 20

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = 0
        self._wake = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="koa-flush", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._done:
                return
            with contextlib.suppress(OSError):
                os.fdatasync(self._fd)

    def wrote(self, count: int) -> None:
        self._pending += count
        if self._pending >= self._EVERY_BYTES:
            self._pending = 0
            self._wake.set()

    def finish(self) -> None:
        self._done = True
        self._wake.set()
        self._thread.join()


class IncomingFile:
    """The partial file of one download, hashed as it grows.

    Parameters
    ----------
    path : Path
        The partial file.
    expected_size : int | None
        The file's final size, when known (to reserve space and pick threaded hashing).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> incoming = IncomingFile(pathlib.Path(tempfile.mkdtemp()) / "x.part", 3)
    >>> incoming.open(resume=False)
    >>> incoming.write(b"abc")
    >>> incoming.close()
    >>> incoming.hexdigest(), incoming.size
    ('900150983cd24fb0d6963f7d28e17f72', 3)
    """

    def __init__(self, path: Path, expected_size: int | None = None):
        self.path = path
        self.expected_size = expected_size
        self.size = 0
        #: True once bytes kept from an earlier attempt were reused.
        self.resumed = False
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._background: _BackgroundMD5 | None = None
        self._flush: _BackgroundFlush | None = None
        self._fd: int | None = None
        self._block: list[bytes] = []
        self._block_bytes = 0

    def open(self, resume: bool) -> None:
        """Open for appending to what is there (hashing it first), or from scratch.

        A link or a second name of another file at :attr:`path` is removed and
        replaced by a new file, never written through.
        """
        self.close()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        # Never through a link, and never into a file with other names (see cache.py).
        if resume:
            self._fd = open_private_file(self.path, append=True)
            with open(self._fd, "rb", closefd=False) as handle:
                while chunk := handle.read(_CHUNK):
                    self._md5.update(chunk)
                    self.size += len(chunk)
            self.resumed = self.resumed or self.size > 0
        else:
            self._fd = create_private_file(self.path)
        remaining = None if self.expected_size is None else self.expected_size - self.size
        if remaining is not None and remaining >= _THREADED_HASH_BYTES:
            # Large: reserve the space up front, hash and write back in the background.
            reserve_space(self._fd, self.size, remaining)
            self._background = _BackgroundMD5(self._md5)
            self._flush = _BackgroundFlush(self._fd)

    def write(self, chunk: bytes) -> None:
        """Append ``chunk`` to the file and to its MD5 (in blocks of about a MiB)."""
        assert self._fd is not None, "write before open"
        self._block.append(chunk)
        self._block_bytes += len(chunk)
        self.size += len(chunk)
        if self._block_bytes >= _CHUNK or len(self._block) >= _BLOCK_CHUNKS:
            self._write_block()

    def _write_block(self) -> None:
        if not self._block:
            return
        block, count = self._block, self._block_bytes
        self._block, self._block_bytes = [], 0
        write_all(self._fd, block)
        if self._background is not None:
            self._background.update(block)
        else:
            # One call per block: each call lets go of the GIL and must win it back,
            # which parallel downloads pay for in contention.
            self._md5.update(block[0] if len(block) == 1 else b"".join(block))
        if self._flush is not None:
            self._flush.wrote(count)

    def close(self, sync: bool = False) -> None:
        """Write out what is gathered, close the file and finish hashing.

        Parameters
        ----------
        sync : bool
            Also flush the file to disk (before renaming a verified download
            into place).
        """
        try:
            if self._fd is not None:
                self._write_block()
                if sync:
                    os.fsync(self._fd)
        finally:
            self._block, self._block_bytes = [], 0
            if self._background is not None:
                self._background.finish()
                self._background = None
            if self._flush is not None:
                self._flush.finish()
                self._flush = None
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def hexdigest(self) -> str:
        """The MD5 of the bytes written so far (after :meth:`close`)."""
        return self._md5.hexdigest()

    def discard(self) -> None:
        """Close and delete the partial file (what is gathered is dropped, not written)."""
        self._block, self._block_bytes = [], 0
        try:
            self.close()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

"""Reading files and answers we are handed, within bounds.

A manifest, an instrument profile or a login service's answer may come from
anyone: a link to ``/dev/zero``, a FIFO that never delivers, a file of
gigabytes, or JSON nested a hundred thousand levels deep. These helpers read
only regular files, never follow a link at the last component, never wait on
a FIFO or a device, read at most a bound (plus one byte, to tell that it was
exceeded), and measure the nesting of JSON before it is parsed.

This module imports only the standard library, so that the archive (which
never imports the client side) may use it too.

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "x.json"
>>> _ = path.write_text('{"a": [1, 2]}')
>>> read_regular_file(path, 1024)
b'{"a": [1, 2]}'
>>> json_nesting_exceeds(b'[[[1]]]', 2), json_nesting_exceeds(b'[[[1]]]', 3)
(True, False)
"""

from __future__ import annotations

import errno
import functools
import logging
import operator
import os
import re
import stat
from itertools import accumulate, count

logger = logging.getLogger(__name__)

__all__ = ["FileRefused", "json_nesting_exceeds", "open_regular_file", "read_regular_file"]

#: A JSON string, escapes included (its brackets are not nesting).
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
#: Every byte but the four that nest, for :meth:`bytes.translate`.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: Opener -> 2, closer -> 0 (see :func:`json_nesting_exceeds`).
_WEIGHTS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


class FileRefused(OSError):
    """A file that is not read: a link, not a regular file, or larger than allowed.

    Callers turn it into their own :class:`~koa_middleware.errors.KOAError`
    naming the file; :attr:`problem` says what is wrong in a few words.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(f"{os.fspath(path)} {problem}")
        self.path = os.fspath(path)
        self.problem = problem


def open_regular_file(path: str | os.PathLike) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading if it is a regular file, without following a link there.

    ``O_NONBLOCK`` keeps a FIFO from making the open wait for a writer; the
    descriptor is then checked with ``fstat``, so what is read is what was
    checked.

    Returns
    -------
    tuple[int, os.stat_result]
        The open descriptor (close it) and its stat.

    Raises
    ------
    FileRefused
        If ``path`` is a symbolic link or not a regular file.
    OSError
        If it cannot be opened (missing, no permission).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileRefused(path, "is a symbolic link; name the file itself") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(path, f"is not a regular file (it is {_kind(info.st_mode)})")
        # Reads of a regular file never block; clear the flag for plain reads.
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def read_regular_file(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refused beyond ``limit`` bytes.

    At most ``limit + 1`` bytes are read whatever the file claims, so a file
    that grows while it is read is refused too.

    Raises
    ------
    FileRefused
        If ``path`` is a link, not a regular file, or larger than ``limit``.
    OSError
        If it cannot be opened or read.
    """
    fd, info = open_regular_file(path)
    try:
        if info.st_size > limit:
            raise FileRefused(path, f"has {info.st_size:,} bytes, more than the {limit:,} allowed")
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise FileRefused(path, f"grew past the {limit:,} bytes allowed while it was read")
    return data


def json_nesting_exceeds(data: bytes | str, limit: int) -> bool:
    """Whether the JSON text ``data`` nests arrays and objects more than ``limit`` deep.

    Strings are set aside first (their brackets do not nest); the depth is then
    followed bracket by bracket, in one pass at C speed that stops early. Text
    that is not balanced JSON is left to the parser, which reports it.

    Examples
    --------
    >>> json_nesting_exceeds(b'{"a": "[[[[", "b": [{}]}', 3)
    False
    >>> json_nesting_exceeds(b'[' * 5000 + b']' * 5000, 100)
    True
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    # An opener counts 2, a closer 0: after k brackets the sum less k is the depth.
    # All of it runs in C iterators and stops at the first level past the limit.
    weights = brackets.translate(_WEIGHTS)
    depths = map(operator.sub, accumulate(weights), count(1))
    return next(filter(functools.partial(operator.lt, limit), depths), None) is not None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"

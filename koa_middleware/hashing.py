"""File checksums, and checking a file against its record."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ChecksumMismatchError

logger = logging.getLogger(__name__)

__all__ = ["file_digest", "file_md5", "verify_file"]

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike) -> tuple[str, int]:
    """Return the MD5 hex digest and the size in bytes of a file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
    >>> _ = p.write_bytes(b"abc")
    >>> file_digest(p)
    ('900150983cd24fb0d6963f7d28e17f72', 3)
    """
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            md5.update(chunk)
            size += len(chunk)
    return md5.hexdigest(), size


def file_md5(path: str | os.PathLike) -> str:
    """Return the lower-case MD5 hex digest of a file."""
    return file_digest(path)[0]


def verify_file(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Check a file's size and MD5 against ``record['file_size']`` and ``record['file_md5']``.

    Fields the record lacks are not checked.

    Raises
    ------
    ChecksumMismatchError
        If the file is missing or its size or MD5 differs from the record.
    """
    path = Path(path)
    if not path.is_file():
        raise ChecksumMismatchError(f"{path} is missing; fetch it again.")
    expected_size = record.get("file_size")
    if expected_size is not None and path.stat().st_size != int(expected_size):
        raise ChecksumMismatchError(
            f"{path.name} has {path.stat().st_size} bytes but its record says "
            f"{expected_size}; the file is incomplete or corrupt: fetch it again."
        )
    expected_md5 = record.get("file_md5")
    if expected_md5:
        actual = file_md5(path)
        if actual != str(expected_md5).lower():
            raise ChecksumMismatchError(
                f"{path.name} has MD5 {actual} but its record says {expected_md5}; "
                "the file is corrupt: fetch it again."
            )

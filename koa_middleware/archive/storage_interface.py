"""The interface of the archive's file store: what the service needs from it.

:class:`FileStorage` receives a new file out of sight (:meth:`~FileStorage.begin`,
a :class:`PendingFile`), then places it under its id, atomically and without
ever replacing a file already there, and reads it back. The stores themselves
are :class:`.storage.LocalFileStorage` and :class:`.s3_storage.S3FileStorage`;
:func:`.storage.open_storage` picks one. This module imports neither, so that
both build on it and imports go one way.
"""

from __future__ import annotations

import abc
import logging
from typing import BinaryIO

from .catalog import StoredFile

logger = logging.getLogger(__name__)

__all__ = ["FileStorage", "PendingFile"]


class PendingFile(abc.ABC):
    """A file being received, out of sight until its storage places it; hashed as written.

    Attributes
    ----------
    size : int
        Bytes written so far.
    """

    size: int

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Append ``data`` to the file and to its checksum."""

    def write_all(self, blocks: list[bytes]) -> None:
        """Append several blocks in order (one call per batch from the receiving loop)."""
        for block in blocks:
            self.write(block)

    @abc.abstractmethod
    def finish(self) -> StoredFile:
        """Make sure every byte is stored (still out of sight); return the MD5 and size."""

    @abc.abstractmethod
    def discard(self) -> None:
        """Drop the file unless it was placed (safe to call more than once)."""


class FileStorage(abc.ABC):
    """The file store of an archive: files named by instrument and calibration id."""

    @abc.abstractmethod
    def begin(
        self, instrument: str, cal_id: str | None = None, md5: str | None = None
    ) -> PendingFile:
        """Start receiving a new file for ``instrument``.

        ``cal_id`` is where it will be placed (object stores write there from the
        start, out of sight); ``md5`` the MD5 it must have, kept with the file
        when the store can (see :meth:`describe`).
        """

    @abc.abstractmethod
    def place(self, pending: PendingFile, instrument: str, cal_id: str) -> bool:
        """Make a finished file visible under ``cal_id``.

        Returns
        -------
        bool
            True when placed; False when a file was already stored under that id
            (it is left as it was and ``pending`` is discarded).
        """

    @abc.abstractmethod
    def exists(self, instrument: str, cal_id: str) -> bool:
        """Return True when a file is stored under ``cal_id``."""

    @abc.abstractmethod
    def open(
        self, instrument: str, cal_id: str, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """Open the stored file for reading bytes ``start`` to ``end`` (exclusive; None: all).

        The handle is positioned at ``start``. Raises FileNotFoundError when missing.
        """

    @abc.abstractmethod
    def digest(self, instrument: str, cal_id: str) -> StoredFile:
        """Read a stored file through and return its MD5 and size."""

    def describe(self, instrument: str, cal_id: str) -> StoredFile | None:
        """MD5 and size of a stored file, as cheaply as the store can; None when absent."""
        return self.digest(instrument, cal_id) if self.exists(instrument, cal_id) else None

    def download_url(self, instrument: str, cal_id: str, seconds: int) -> str | None:
        """A URL that serves the stored file for ``seconds``; None when storage has none."""
        return None

    def clean_incoming(self, max_age: float = 3600.0) -> int:
        """Remove uploads abandoned by a crash, untouched for ``max_age`` seconds."""
        return 0

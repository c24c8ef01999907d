"""The archive's file stores: the local folder, and :func:`open_storage`, which picks one.

The interface, :class:`~.storage_interface.FileStorage` and
:class:`~.storage_interface.PendingFile`, is in :mod:`.storage_interface`.
:class:`LocalFileStorage` keeps files in ``DIR/files/<instrument>/<id>``;
:class:`.s3_storage.S3FileStorage` keeps them in S3-compatible object storage.
:func:`open_storage` picks one from ``--storage``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..errors import ConfigurationError
from ..records import safe_path, validate_cal_id, validate_column_name
from .catalog import StoredFile
from .storage_interface import FileStorage, PendingFile

logger = logging.getLogger(__name__)

__all__ = ["LocalFileStorage", "LocalPendingFile", "open_storage"]


#: Bytes written between two requests to start writeback.
_WRITEBACK_STEP = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(2), which starts writeback without waiting for it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # advisory: errors are ignored

    return start


_sync_file_range = _load_sync_file_range()


def _start_writeback(fd: int, offset: int, length: int) -> None:
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length)


class LocalPendingFile(PendingFile):
    """A file being received: written under a temporary name, hashed as it is written.

    Examples
    --------
    >>> pending = storage.begin("hispec")  # doctest: +SKIP
    >>> pending.write(b"data"); stored = pending.finish()  # doctest: +SKIP
    """

    def __init__(self, path: Path):
        self.path = path
        self.size = 0
        self._flushed = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._handle: BinaryIO | None = open(path, "xb")  # noqa: SIM115 - closed in finish/discard

    def write(self, data: bytes) -> None:
        """Append ``data`` to the file and to its checksum."""
        assert self._handle is not None, "write after finish or discard"
        self._handle.write(data)
        self._md5.update(data)
        self.size += len(data)
        if self.size - self._flushed >= _WRITEBACK_STEP:
            # Start writing what we have to disk now, so the final fsync has little left.
            self._handle.flush()
            _start_writeback(self._handle.fileno(), self._flushed, self.size - self._flushed)
            self._flushed = self.size

    def finish(self) -> StoredFile:
        """Flush the file to disk and return its MD5 and size."""
        assert self._handle is not None, "finish after discard"
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        return StoredFile(self._md5.hexdigest(), self.size)

    def discard(self) -> None:
        """Close and delete the temporary file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.path.unlink(missing_ok=True)


class LocalFileStorage(FileStorage):
    """Files in ``ROOT/files/<instrument>/<id>``; uploads land in ``ROOT/files/.incoming``.

    Parameters
    ----------
    root : str | Path
        The archive folder.
    """

    def __init__(self, root: str | Path):
        self.files_dir = Path(root).expanduser().absolute() / "files"
        self.incoming_dir = self.files_dir / ".incoming"
        self.incoming_dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalFileStorage({str(self.files_dir)!r})"

    def path_for(self, instrument: str, cal_id: str) -> Path:
        """Return where the file of ``cal_id`` lives (never outside its instrument's folder)."""
        folder = self.files_dir / validate_column_name(instrument)
        return safe_path(folder, validate_cal_id(cal_id))

    def begin(
        self, instrument: str, cal_id: str | None = None, md5: str | None = None
    ) -> LocalPendingFile:
        """Start receiving a new file (in ``files/.incoming``)."""
        return LocalPendingFile(self.incoming_dir / f"{uuid.uuid4().hex}.part")

    def place(self, pending: PendingFile, instrument: str, cal_id: str) -> bool:
        """Link the finished file to ``files/<instrument>/<id>``; never replaces one."""
        assert isinstance(pending, LocalPendingFile)
        destination = self.path_for(instrument, cal_id)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            # A hard link never replaces an existing file, unlike rename.
            os.link(pending.path, destination)
        except FileExistsError:
            pending.discard()
            return False
        pending.path.unlink()
        _fsync_directory(destination.parent)
        return True

    def exists(self, instrument: str, cal_id: str) -> bool:
        """Return True when a file is stored under ``cal_id``."""
        return self.path_for(instrument, cal_id).is_file()

    def open(
        self, instrument: str, cal_id: str, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """Open the stored file for reading, positioned at ``start``."""
        handle = open(self.path_for(instrument, cal_id), "rb")  # noqa: SIM115 - the caller closes
        if start:
            handle.seek(start)
        return handle

    def digest(self, instrument: str, cal_id: str) -> StoredFile:
        """Read the stored file through; return its MD5 and size."""
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        with self.open(instrument, cal_id) as handle:
            while chunk := handle.read(1 << 20):
                md5.update(chunk)
                size += len(chunk)
        return StoredFile(md5.hexdigest(), size)

    def clean_incoming(self, max_age: float = 3600.0) -> int:
        """Delete uploads abandoned by a crash (untouched for ``max_age`` seconds)."""
        cutoff = time.time() - max_age
        removed = 0
        for entry in self.incoming_dir.glob("*.part"):
            try:
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            logger.info("Removed %d abandoned upload(s) from %s", removed, self.incoming_dir)
        return removed


def open_storage(
    spec: str | None, root: str | Path, s3_endpoint_url: str | None = None
) -> FileStorage:
    """The file storage named by ``--storage``: ``s3://BUCKET/PREFIX``, or ``ROOT/files``.

    Parameters
    ----------
    spec : str | None
        ``s3://BUCKET/PREFIX``, or None for the folder ``ROOT/files``.
    root : str | Path
        The archive folder.
    s3_endpoint_url : str | None
        The object store's endpoint (else the standard AWS variables decide).

    Returns
    -------
    FileStorage

    Raises
    ------
    ConfigurationError
        If ``spec`` is not an ``s3://`` URL, or the store cannot be used (the
        message says why).

    Examples
    --------
    >>> open_storage(None, "/srv/koa")  # doctest: +SKIP
    LocalFileStorage('/srv/koa/files')
    """
    if spec is None:
        return LocalFileStorage(root)
    if not spec.startswith("s3://"):
        raise ConfigurationError(
            f"--storage {spec!r}: write s3://BUCKET/PREFIX for object storage, or leave "
            "--storage out to keep files under ROOT/files."
        )
    from .s3_storage import S3FileStorage  # boto3 only when it is needed

    return S3FileStorage.from_url(spec, s3_endpoint_url)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

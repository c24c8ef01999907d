"""The layout of the local calibration cache, and putting files into it atomically.

::

    <cache_dir>/
      calibrations/<instrument>/<filename>     the files
      database/<instrument>_calibrations.db    SQLite
      tmp/<instrument>/                        files being written (cleaned on start)
      locks/<instrument>/<id>.lock             one writer per calibration id

Every path built from a record goes through :meth:`CacheLayout.path_for`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .records import safe_path, validate_cal_id

logger = logging.getLogger(__name__)

__all__ = ["CacheLayout", "PendingWrite", "place_file"]


class CacheLayout:
    """Paths of one instrument's part of a calibration cache.

    Parameters
    ----------
    cache_dir : str | Path
        The cache's root folder; ``~`` is expanded and the path made absolute.
    instrument : str
        The instrument name (lower-cased here).

    Examples
    --------
    >>> layout = CacheLayout("/tmp/koa_cache", "HISPEC")
    >>> layout.path_for("dark.fits").as_posix()
    '/tmp/koa_cache/calibrations/hispec/dark.fits'
    """

    def __init__(self, cache_dir: str | os.PathLike, instrument: str):
        self.root = Path(cache_dir).expanduser().absolute()
        self.instrument = instrument.lower()
        self.calibrations_dir = self.root / "calibrations" / self.instrument
        self.database_dir = self.root / "database"
        self.tmp_dir = self.root / "tmp" / self.instrument
        self.locks_dir = self.root / "locks" / self.instrument
        self._created = False

    def create(self) -> None:
        """Create the cache folders if they do not exist yet (once per layout object)."""
        if self._created:
            return
        for folder in (self.calibrations_dir, self.database_dir, self.tmp_dir, self.locks_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._created = True

    def path_for(self, filename: str) -> Path:
        """Return the cache path of a calibration file name, refusing any that leaves the cache.

        Raises
        ------
        InvalidRecordError
            If ``filename`` is not a plain file name.
        """
        return safe_path(self.calibrations_dir, filename)

    def temp_path(self, hint: str = "") -> Path:
        """Return a fresh, unused path in the temporary folder."""
        suffix = Path(hint).suffix if hint else ""
        return self.tmp_dir / f"{uuid.uuid4().hex}{suffix}.part"

    @contextmanager
    def lock(self, cal_id: str) -> Iterator[None]:
        """Hold the inter-process lock that guards writing calibration ``cal_id``.

        An exclusive ``flock`` on ``locks/<instrument>/<id>.lock``, waited for
        when another thread or process holds it. The system releases it when
        the block ends or the holder dies, so a killed process never leaves a
        calibration locked. Lock files stay (removing one could let two holders
        lock different files of the same name).

        Examples
        --------
        >>> with layout.lock(cal_id):  # doctest: +SKIP
        ...     pass  # only one writer of cal_id in here, across processes
        """
        path = self.locks_dir / f"{validate_cal_id(cal_id)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def clean_temp(self) -> None:
        """Remove leftovers of interrupted writes from the temporary folder.

        Only files older than a minute go, so that a write under way in another
        process is left alone; partial downloads (``*.download``), which a later
        fetch of the same calibration resumes, are kept for a day.
        """
        if not self.tmp_dir.is_dir():
            return
        now = time.time()
        for entry in self.tmp_dir.iterdir():
            if entry.suffix == ".pending":
                continue  # crash-recovery markers: recover_pending handles them
            max_age = 86_400 if entry.suffix == ".download" else 60
            try:
                if entry.stat().st_mtime >= now - max_age:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
                logger.debug("Removed stale temporary file %s", entry)
            except FileNotFoundError:
                continue

    @contextmanager
    def pending_write(self, cal_id: str) -> Iterator[PendingWrite]:
        """Mark a write as under way, for crash recovery.

        While the block runs, ``tmp/<instrument>/<id>.pending`` exists and is locked
        by this process; call ``note(filename)`` on what the block yields before
        renaming a file into place. Leave the block only after the record is
        committed, or, on error, after removing the placed file: a marker left by a
        killed process tells :meth:`recover_pending` to remove a file whose record
        never landed.
        """
        marker = self.tmp_dir / f"{validate_cal_id(cal_id)}.pending"
        fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield PendingWrite(fd)
        finally:
            marker.unlink(missing_ok=True)
            os.close(fd)

    def recover_pending(self, record_owns: Callable[[str, str], bool]) -> list[Path]:
        """Remove files that a killed writer placed but never committed.

        Parameters
        ----------
        record_owns : callable
            ``record_owns(cal_id, filename)`` is True when a committed record with
            that id, or any record with that file name, exists.

        Returns
        -------
        list[Path]
            The files removed.
        """
        removed: list[Path] = []
        if not self.tmp_dir.is_dir():
            return removed
        for marker in self.tmp_dir.glob("*.pending"):
            try:
                fd = os.open(marker, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive
                filename = os.read(fd, 4096).decode("utf-8", "replace")
                cal_id = marker.stem
                if filename and not record_owns(cal_id, filename):
                    path = self.path_for(filename)
                    if path.exists():
                        path.unlink()
                        removed.append(path)
                        logger.warning("Removed %s: its registration was interrupted", path)
                marker.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return removed


class PendingWrite:
    """The open marker of a write under way (see :meth:`CacheLayout.pending_write`)."""

    def __init__(self, fd: int):
        self._fd = fd

    def note(self, filename: str) -> None:
        """Record the name of the file about to be renamed into place."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, filename.encode("utf-8"), 0)


def place_file(source: Path, destination: Path, *, synced: bool = False) -> None:
    """Move a complete file into place atomically (same file system).

    The data is flushed to disk before the rename, so the name never points at
    a file whose contents could still be lost: a crash at any instant leaves
    either no file or the complete one. Pass ``synced=True`` when the writer
    already flushed ``source`` (``os.fsync`` before closing it).
    """
    if not synced:
        with open(source, "rb") as handle:
            os.fsync(handle.fileno())
    os.replace(source, destination)

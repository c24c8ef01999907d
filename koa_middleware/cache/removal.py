"""Removing cached files under their calibrations' locks, many at a time.

:class:`FileRemoval` opens the cache's ``calibrations/<instrument>/`` and
``locks/<instrument>/`` folders once (as
:meth:`~koa_middleware.cache.layout.CacheLayout.open_folder` does: one level at
a time, never through a link) and takes every name relative to them, instead of
walking from the cache's root for each lock, each test and each file. The
locks are taken without waiting (a file in use is kept), through the reused
lock files of :mod:`koa_middleware.cache.lock_slots` where the system allows,
so that a prune of tens of thousands of files creates no file per file.

A file is removed only while its calibration's lock is held, the lock
:mod:`koa_middleware.cache.locks` describes, which every process that writes,
checks or reads a cached file takes first; its recorded stat is forgotten
(committed) before the file goes, so a crash in between leaves a file that
is checked in full again, never a file reported lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..records import validate_cal_id, validate_filename
from .lock_slots import LockSlots
from .locks import held_lock, release, try_lock

if TYPE_CHECKING:
    from .layout import CacheLayout

logger = logging.getLogger(__name__)

__all__ = ["BATCH", "FileRemoval"]

#: Locks held at once by :meth:`FileRemoval.remove_unless_in_use` (one descriptor each).
BATCH = 256


class FileRemoval:
    """Descriptors of a cache's files and locks folders, for removals under locks.

    Use it as a context manager: the folders are checked and opened on entry,
    closed on exit.

    Parameters
    ----------
    layout : CacheLayout
        The cache (its own folders; a read-only cache is never given here).

    Raises
    ------
    UnsafeCachePathError
        On entry, if a cache folder is a link leading out of the cache.

    Examples
    --------
    >>> with FileRemoval(store.layout) as removal:  # doctest: +SKIP
    ...     removed, busy = removal.remove_unless_in_use(records, store.local_db.forget_file_stats)
    """

    def __init__(self, layout: CacheLayout):
        self.layout = layout
        self.files_fd = -1
        self.locks_fd = -1
        self.tmp_fd = -1
        self._slots: LockSlots | None = None

    def __repr__(self) -> str:
        return f"FileRemoval({self.layout.calibrations_dir})"

    def __enter__(self) -> FileRemoval:
        self.layout.check_folders()  # missing folders are made, links out refused
        with contextlib.ExitStack() as opened:
            folders = []
            for folder in (
                self.layout.calibrations_dir,
                self.layout.locks_dir,
                self.layout.tmp_dir,
            ):
                fd = self.layout.open_folder(folder)
                opened.callback(os.close, fd)
                folders.append(fd)
            self.files_fd, self.locks_fd, self.tmp_fd = folders
            self._slots = LockSlots(self.tmp_fd, self.locks_fd, self.layout.tmp_dir, BATCH)
            opened.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._slots.close()
        finally:
            for fd in (self.tmp_fd, self.locks_fd, self.files_fd):
                os.close(fd)
            self.files_fd = self.locks_fd = self.tmp_fd = -1

    def _lock_name(self, cal_id: str) -> Path:
        return self.layout.locks_dir / f"{validate_cal_id(cal_id)}.lock"

    @staticmethod
    def _file_name(filename: str) -> str:
        """The record's file name, refused unless a plain name: taken relative to the folder.

        Raises
        ------
        InvalidRecordError
            If it holds a separator, is ``.`` or ``..``, or breaks another rule of
            :func:`~koa_middleware.records.validate_filename`.
        """
        return validate_filename(filename)

    @contextmanager
    def locked(self, cal_id: str) -> Iterator[None]:
        """Hold calibration ``cal_id``'s lock, waiting as :meth:`CacheLayout.lock` does."""
        with held_lock(
            self._lock_name(cal_id), dir_fd=self.locks_fd, timeout=self.layout.lock_timeout
        ):
            yield

    def unlink(self, filename: str) -> None:
        """Remove the record's file from the cache (a link is removed itself; none: nothing)."""
        self._unlink_checked(self._file_name(filename))

    def _unlink_checked(self, name: str) -> None:
        """:meth:`unlink` of a name already checked to be a plain file name."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.files_fd)

    def remove_unless_in_use(
        self, records: Iterable[dict], forget: Callable[[list[str]], None]
    ) -> tuple[list[dict], list[dict]]:
        """Remove the records' files, except those whose lock a running process holds.

        The locks are tried without waiting, :data:`BATCH` at a time; for each
        batch, ``forget`` is given the ids whose files go (one transaction for
        the batch), then the files are removed, then the locks let go.

        Parameters
        ----------
        records : iterable of dict
            The records (``id``, ``filename``) whose files to remove.
        forget : callable
            Given the ids of a batch, drops what the database keeps of their
            files; it runs, and commits, before any of them is removed.

        Returns
        -------
        tuple of (list of dict, list of dict)
            The records whose files were removed, and those kept in use.
        """
        removed: list[dict] = []
        in_use: list[dict] = []
        batch: list[_Held] = []
        try:
            for record in records:
                # a name that leaves: refused before any lock; checked once, removed as checked
                held = self._try_lock(record, self._file_name(record["filename"]))
                if held is None:
                    in_use.append(record)
                    continue
                batch.append(held)
                if len(batch) >= BATCH:
                    removed += self._remove_batch(batch, forget)
            if batch:
                removed += self._remove_batch(batch, forget)
        finally:
            self._release(batch)  # an error part way: let go of what is still held
        return removed, in_use

    def _try_lock(self, record: dict, filename: str) -> _Held | None:
        """Take the record's lock without waiting (through a slot where it can); None: in use."""
        lock = f"{validate_cal_id(record['id'])}.lock"
        slot = self._slots.take(lock)
        if slot is not None:
            return _Held(record, filename, lock, slot[1], slot)
        fd = try_lock(self.layout.locks_dir / lock, dir_fd=self.locks_fd)
        return None if fd is None else _Held(record, filename, lock, fd, None)

    def _release(self, batch: list[_Held]) -> None:
        held = list(batch)
        batch.clear()
        for entry in held:
            if entry.slot is not None:
                self._slots.give_back(entry.lock, entry.slot)
            else:
                release(self.layout.locks_dir / entry.lock, entry.fd, dir_fd=self.locks_fd)

    def _remove_batch(self, batch: list[_Held], forget: Callable[[list[str]], None]) -> list[dict]:
        """Forget, remove and let go of one batch of locked records' files."""
        records = [entry.record for entry in batch]
        try:
            forget([record["id"] for record in records])
            for entry in batch:
                self._unlink_checked(entry.filename)
                logger.debug("Removed %s (calibration %s)", entry.filename, entry.record["id"])
        finally:
            self._release(batch)
        return records


class _Held(NamedTuple):
    """A record whose lock a removal holds: by a created lock file, or through a slot."""

    record: dict
    filename: str  # the record's file name, checked to be a plain name
    lock: str  # the lock file's name in the locks folder
    fd: int
    slot: tuple[str, int] | None

"""The private folders of registrations: where a model writes its file before it is placed.

:class:`Staging` is the store's collaborator for them (``store.staging``): the
registration code (:mod:`koa_middleware.cache.registration`) and the store's
steps (:mod:`koa_middleware.cache.registration_steps`) use only its public
methods. Each thread of a store keeps one folder under ``tmp/<instrument>/``
for the store's life; a registration empties it when it ends, whatever
happened. The helpers here never follow a link put in the folder's place, and
never delete anything outside it.

The model writes into the private folder, not into ``calibrations/``: its file
name is known only once ``save()`` returns, so neither a crash-recovery marker
nor the check that the name belongs to no registered calibration could come
before the write. The file is renamed into place when its record commits, and
the model is then told where its file went
(:func:`koa_middleware.cache.registration_steps.point_model_at`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import CalibrationSaveError, InvalidRecordError, UnsafeCachePathError
from ..hashing import file_digest
from ..records import safe_path
from .layout import cache_full_error, create_private_file, is_disk_full
from .permissions import make_folder

if TYPE_CHECKING:
    from .layout import CacheLayout

logger = logging.getLogger(__name__)

__all__ = [
    "COPY_CHUNK",
    "RegisteredFiles",
    "Staging",
    "copy_into",
    "empty_folder",
    "fresh_folder",
]

#: Bytes per read when a saved file is copied into the private folder.
COPY_CHUNK = 1 << 20


class RegisteredFiles(Protocol):
    """What :class:`Staging` asks of the local database: is a file name registered."""

    def query_filename(self, filename: str) -> dict | None: ...


class _ThreadState(threading.local):
    """The registration running in this thread: its folder and the MD5s computed in it."""

    folder: Path | None = None
    reserved: Path | None = None
    digests: dict[str, tuple[str, int]]

    def __init__(self) -> None:
        self.digests = {}


class Staging:
    """The private folders of a store's registrations, one per thread.

    Parameters
    ----------
    layout : CacheLayout
        The cache whose ``tmp/<instrument>/`` holds the folders.
    registered : RegisteredFiles
        The local database, asked whether a file name belongs to a registered
        calibration (such a file is never moved or replaced).

    Examples
    --------
    >>> with store.staging.staged() as folder:  # doctest: +SKIP
    ...     path = store.staging.adopt(model.save(output_dir=str(folder)), folder)
    ...     md5, size = store.staging.digest(path)
    """

    def __init__(self, layout: CacheLayout, registered: RegisteredFiles):
        self.layout = layout
        self.registered = registered
        self._state = _ThreadState()
        self._folders: list[Path] = []
        self._folders_lock = threading.Lock()

    @property
    def folder(self) -> Path | None:
        """The private folder of the registration running in this thread (None between them)."""
        return self._state.folder

    @contextlib.contextmanager
    def staged(self) -> Iterator[Path]:
        """Make this thread's private folder the current one for the block.

        The folder is emptied when the block ends, whatever happened in it. A
        link or file put in the folder's place is removed (never followed) and
        the folder made again. Nested blocks share the outer block's folder.

        Raises
        ------
        UnsafeCachePathError
            If ``tmp/<instrument>`` is a link leading out of the cache.
        """
        state = self._state
        if state.folder is not None:
            yield state.folder
            return
        folder = state.reserved
        if folder is None:
            folder = state.reserved = self.layout.tmp_dir / f"{uuid.uuid4().hex}.stage"
            with self._folders_lock:
                self._folders.append(folder)
        self.layout.check_folders()
        fresh_folder(folder)
        state.folder, state.digests = folder, {}
        try:
            yield folder
        finally:
            state.folder, state.digests = None, {}
            empty_folder(folder)

    def digest(self, path: str | os.PathLike) -> tuple[str, int]:
        """MD5 (hex) and size of a file, computed once per registration."""
        key = os.fspath(path)
        state = self._state
        digests = state.digests if state.folder is not None else {}
        if key not in digests:
            digests[key] = file_digest(key)
        return digests[key]

    def adopt(self, saved: str | os.PathLike, folder: Path) -> Path:
        """The saved file, inside the private ``folder``: moved or copied there if need be.

        A file a step wrote straight into the cache is moved (unless a registered
        calibration owns it); a file elsewhere is copied, leaving the original alone.

        The copy is a new file of the private folder (``O_EXCL``, ``O_NOFOLLOW``):
        a link planted under its name is replaced, never written through.

        Raises
        ------
        CalibrationSaveError
            If ``saved`` is not a regular file (a link is refused too).
        InvalidRecordError
            If ``saved`` is the file of a registered calibration.
        CacheFullError
            If the cache's file system has no room for the copy (the partial copy
            is removed).
        """
        saved = os.fspath(saved)
        try:
            info = os.lstat(saved)
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            raise CalibrationSaveError(
                f"save() returned {saved!r}, which is not a regular file; save() must "
                "write the file and return its path. Nothing was registered."
            )
        if os.path.dirname(os.path.abspath(saved)) == str(folder):
            return Path(saved)
        path = Path(os.path.realpath(saved))
        target = safe_path(folder, path.name)
        if path.parent == Path(os.path.realpath(self.layout.calibrations_dir)):
            if self.registered.query_filename(path.name):
                raise InvalidRecordError(
                    f"save() wrote {path}, the file of a registered calibration; save "
                    "into data_dir (or _get_local_filepath()) under a new name instead."
                )
            os.replace(path, target)
        else:
            copy_into(path, target, info.st_size)
        return target

    def close(self) -> None:
        """Remove the private folders of this store's registrations (when the store closes)."""
        with self._folders_lock:
            folders, self._folders = self._folders, []
        if not folders:
            return
        try:
            with self.layout.opened_folder(self.layout.tmp_dir) as tmp:
                for folder in folders:  # by name in tmp/<instrument>, never through a link
                    shutil.rmtree(folder.name, ignore_errors=True, dir_fd=tmp)
        except (FileNotFoundError, UnsafeCachePathError) as exc:
            logger.debug("Left the private folders of registrations alone: %s", exc)


def fresh_folder(folder: Path) -> None:
    """Make ``folder`` an empty-able private folder of the store, touched now.

    Touching keeps the cleaning of ``tmp/`` away from it. Anything but a real
    folder at its name (a link, a file) is removed, never followed, and the
    folder made again.
    """
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        make_folder(folder)  # the cache's group may clean it up after a killed process
        return
    if stat.S_ISDIR(info.st_mode):
        os.utime(folder, follow_symlinks=False)
        return
    logger.warning(
        "%s, the private folder of registrations, was replaced by %s; removing it (what it "
        "points to is left alone) and making the folder again.",
        folder,
        f"a link to {os.readlink(folder)}" if stat.S_ISLNK(info.st_mode) else "a file",
    )
    os.unlink(folder)
    make_folder(folder)


def empty_folder(folder: Path) -> None:
    """Remove whatever a registration left in its private folder.

    The folder is opened without following a link, and its entries removed
    relative to it: a link put in the folder's place is removed itself, and
    nothing outside the folder is ever deleted.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(folder, flags)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        logger.warning("Removed %s: a link or file had taken the place of a folder", folder)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder)
        return
    try:
        for entry in list(os.scandir(fd)):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.name, ignore_errors=True, dir_fd=fd)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)


def copy_into(source: Path, target: Path, size: int) -> None:
    """Copy ``source`` to the new file ``target`` (never through a link at ``target``).

    Raises
    ------
    CacheFullError
        If there is no room for the copy; the partial copy is removed.
    """
    fd = create_private_file(target)
    try:
        with open(source, "rb") as reader, open(fd, "wb", closefd=False) as writer:
            shutil.copyfileobj(reader, writer, COPY_CHUNK)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        if is_disk_full(exc):
            what = f"the copy of {source.name} into the cache"
            raise cache_full_error(exc, target.parent, size, what) from exc
        raise
    finally:
        os.close(fd)

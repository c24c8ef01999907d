"""The private folder of a registration: where a model writes its file before it is placed.

Each thread of a store keeps one folder under ``tmp/<instrument>/`` for the
store's life; a registration empties it when it ends, whatever happened. The
helpers here never follow a link put in the folder's place, and never delete
anything outside it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import threading
from pathlib import Path

from .permissions import make_folder

logger = logging.getLogger(__name__)

__all__ = ["COPY_CHUNK", "Staging", "copy_into", "empty_folder", "fresh_folder"]

#: Bytes per read when a saved file is copied into the private folder.
COPY_CHUNK = 1 << 20


class Staging(threading.local):
    """The private folder of the registration running in this thread, if any.

    Each thread keeps one folder for the store's life (``reserved``), so a
    registration costs no folder creation; ``folder`` is set only while a
    registration runs.
    """

    folder: Path | None = None
    reserved: Path | None = None
    digests: dict[str, tuple[str, int]]


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
    from .layout import cache_full_error, create_private_file, is_disk_full

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

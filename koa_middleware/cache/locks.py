"""Lock files of the cache: one per calibration being written, removed after use.

A writer of calibration ``<id>`` holds an exclusive ``flock`` on
``locks/<instrument>/<id>.lock``. The file exists only while someone uses it:
the holder removes it before letting go, so lock files never pile up however
many calibrations a cache has seen. The protocol that makes removal safe:

1. open the name (creating it; never through a link), then ``flock`` it;
2. once locked, check that the name still leads to the locked file (same
   device and inode). A waiter whose file was removed (or replaced) by the
   previous holder finds it is not, lets go, and starts again on what the name
   leads to now;
3. remove the name only while holding the lock on the file it leads to.

So at any moment at most one process holds a lock on the file the name leads
to. The system drops a lock when its holder dies; the file then stays until
the next holder removes it. A link planted at a lock's name is removed,
never followed.

Files are opened read-only to be locked: ``flock`` needs no write access, so a
lock file created by another account of a shared cache can always be locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UnsafeCachePathError
from .permissions import FILE_MODE, match_folder_group

logger = logging.getLogger(__name__)

__all__ = [
    "held_lock",
    "is_locked",
    "is_own_file",
    "leads_to",
    "locked_file",
    "remove_planted",
]

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


@contextmanager
def held_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock named ``path``; remove the file before letting go.

    Parameters
    ----------
    path : Path
        The lock file's name (created when missing, never through a link).

    Raises
    ------
    UnsafeCachePathError
        If the name keeps being replaced, or a folder has it.

    Examples
    --------
    >>> import tempfile
    >>> name = Path(tempfile.mkdtemp()) / "x.lock"
    >>> with held_lock(name):
    ...     name.exists()
    True
    >>> name.exists()
    False
    """
    fd = locked_file(path)
    try:
        yield
    finally:
        try:
            _remove_if_locked(path, fd)
        finally:
            os.close(fd)  # releases the lock


def is_locked(path: Path) -> bool:
    """Whether a running process holds a lock on the file named ``path`` (never waits).

    The file is not created: a missing file is a lock nobody holds. The
    answer is true only of the moment it was taken.

    Parameters
    ----------
    path : Path
        The lock file's name.

    Returns
    -------
    bool
        True while a live process holds the lock (shared or exclusive).

    Examples
    --------
    >>> import tempfile
    >>> name = Path(tempfile.mkdtemp()) / "x.lock"
    >>> is_locked(name)
    False
    >>> with held_lock(name):
    ...     is_locked(name)
    True
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False  # a link is never a held lock: holders replace it
        raise
    try:
        if not is_own_file(os.fstat(fd)):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)  # lets go of the test lock, if it was taken


def locked_file(path: Path, *, write: bool = False) -> int:
    """Open (creating it) and ``flock`` the file ``path``, never through a link.

    After the lock is taken, the name must still be the locked file (a holder
    that finished may have removed it, or a planted name been replaced);
    otherwise the lock is taken again on what the name is now.

    Parameters
    ----------
    path : Path
        The file.
    write : bool
        Open it for reading and writing (else read-only, which is all a lock needs).

    Returns
    -------
    int
        The locked descriptor; closing it releases the lock.

    Raises
    ------
    UnsafeCachePathError
        If the name keeps being replaced.
    """
    access = os.O_RDWR if write else os.O_RDONLY
    for _ in range(1000):
        created = False
        try:
            fd = os.open(path, access | os.O_NONBLOCK | _NOFOLLOW)
        except FileNotFoundError:
            try:
                fd = os.open(
                    path, access | os.O_CREAT | os.O_EXCL | os.O_NONBLOCK | _NOFOLLOW, FILE_MODE
                )
                created = True
            except FileExistsError:
                continue  # another process made it first: open that one
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                remove_planted(path, "a lock file")
                continue
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            remove_planted(path, "a lock file")
            continue
        try:
            if created:
                match_folder_group(fd, path.parent)
            info = os.fstat(fd)
            if info.st_nlink == 0:
                continue  # its last holder removed it: open what the name leads to now
            if not is_own_file(info):
                if leads_to(path, fd):  # a second name of another file, or not a file
                    remove_planted(path, "a lock file")
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            if leads_to(path, fd):
                result, fd = fd, -1
                return result
        finally:
            if fd >= 0:
                os.close(fd)
    raise UnsafeCachePathError(
        f"Could not lock {path}: its name keeps being replaced. Check what else writes "
        "into the cache's folders."
    )


def leads_to(path: Path, fd: int) -> bool:
    """Whether the name ``path`` leads to the open file ``fd`` (not through a link).

    Parameters
    ----------
    path : Path
        A file name.
    fd : int
        An open file.

    Returns
    -------
    bool
        True when both are the same file (device and inode).

    Examples
    --------
    >>> import tempfile
    >>> name = Path(tempfile.mkdtemp()) / "f"
    >>> fd = os.open(name, os.O_CREAT | os.O_RDONLY, 0o666)
    >>> leads_to(name, fd)
    True
    >>> os.close(fd)
    """
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _remove_if_locked(path: Path, fd: int) -> None:
    """Remove the name ``path`` if it still leads to ``fd``, whose lock the caller holds."""
    if leads_to(path, fd):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except PermissionError as exc:
            # a folder this account may not change: the file stays, still safe to reuse
            logger.debug("Could not remove the lock file %s: %s", path, exc)


def is_own_file(info: os.stat_result) -> bool:
    """A regular file with one name: nothing else can see or change its bytes through a link."""
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def remove_planted(path: Path, what: str, quiet: bool = False) -> None:
    """Remove the name ``path`` (a link is removed itself, never what it points to).

    Raises
    ------
    UnsafeCachePathError
        If a folder has the name.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        raise UnsafeCachePathError(
            f"{path} is a folder where the store keeps {what}; remove it and try again."
        )
    if stat.S_ISLNK(info.st_mode):
        logger.warning(
            "Removed the link %s (to %s) where the store keeps %s; the file it points to is "
            "left alone.",
            path,
            os.readlink(path),
            what,
        )
    elif not quiet or not is_own_file(info):
        logger.warning("Replaced %s, which was not a file the store made (%s).", path, what)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

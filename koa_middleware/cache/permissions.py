"""Modes and groups of what the store creates, so that one Unix group can share a cache.

Every file the store creates is opened with mode ``0o666`` and every folder
with ``0o777``, so the creator's umask alone decides who may read and write
them: under ``umask 002`` the members of the file's group may register and
sync as its owner does. Folders keep the group of the folder they are made
in (and its setgid bit), and files take the group of their folder, so a cache
whose root belongs to a shared group stays that group's throughout, whatever
each account's primary group is.

Changing a group is best effort: an account may only give its files to groups
it belongs to. When it cannot, the file keeps the account's group and a debug
message says so.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["FILE_MODE", "FOLDER_MODE", "make_folder", "make_folders", "match_folder_group"]

#: Mode asked for new files; the umask takes bits away.
FILE_MODE = 0o666
#: Mode asked for new folders; the umask takes bits away.
FOLDER_MODE = 0o777


def make_folder(path: str | os.PathLike) -> bool:
    """Create the folder ``path`` with the group (and setgid bit) of its parent.

    Parameters
    ----------
    path : str | PathLike
        The folder; its parent must exist.

    Returns
    -------
    bool
        True when the folder was created, False when a folder (or a link to
        one) had the name already.

    Raises
    ------
    FileExistsError
        If something other than a folder has the name.

    Examples
    --------
    >>> import tempfile
    >>> make_folder(Path(tempfile.mkdtemp()) / "calibrations")
    True
    """
    try:
        os.mkdir(path, FOLDER_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return False
    parent = os.stat(os.path.dirname(os.path.abspath(path)))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _give_group(fd, parent.st_gid, path)
        if parent.st_mode & stat.S_ISGID:
            mode = os.fstat(fd).st_mode
            if not mode & stat.S_ISGID:
                os.fchmod(fd, stat.S_IMODE(mode) | stat.S_ISGID)
    finally:
        os.close(fd)
    return True


def make_folders(path: str | os.PathLike) -> None:
    """Create ``path`` and its missing parents, each as :func:`make_folder` does.

    Examples
    --------
    >>> import tempfile
    >>> make_folders(Path(tempfile.mkdtemp()) / "a" / "b")
    """
    path = Path(path).absolute()
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        make_folder(folder)


def match_folder_group(fd: int, folder: str | os.PathLike | int) -> None:
    """Give the open file ``fd`` the group of ``folder`` when it has another one.

    Parameters
    ----------
    fd : int
        A descriptor of a file the caller owns.
    folder : str | PathLike | int
        The folder the file lives in, or an open descriptor of it.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> fd = os.open(os.path.join(folder, "f"), os.O_CREAT | os.O_RDWR, FILE_MODE)
    >>> match_folder_group(fd, folder)
    >>> os.close(fd)
    """
    try:
        gid = os.stat(folder).st_gid
    except OSError:
        return
    _give_group(fd, gid, folder)


def _give_group(fd: int, gid: int, where: str | os.PathLike) -> None:
    info = os.fstat(fd)
    if info.st_gid == gid or info.st_uid != os.geteuid() and os.geteuid() != 0:
        return
    mode = stat.S_IMODE(info.st_mode)
    try:
        os.fchown(fd, -1, gid)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EACCES):
            raise
        logger.debug(
            "Could not give a file in %s the group %d of its folder (%s); it keeps group %d.",
            where,
            gid,
            exc,
            info.st_gid,
        )
        return
    if mode & (stat.S_ISGID | stat.S_ISUID) and os.fstat(fd).st_mode != info.st_mode:
        os.fchmod(fd, mode)  # chown clears the set-id bits; put them back

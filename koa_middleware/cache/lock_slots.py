"""Lock files a prune reuses: each is renamed to a calibration's lock name, and back.

Creating a file allocates an inode, which on a file system full of a large
cache's files costs hundreds of microseconds, far more than anything else a
prune does per file; a rename costs some tens. So a prune creates a few lock
files once, in ``tmp/<instrument>/``, holds their ``flock`` all along, and for
each calibration renames one to ``locks/<instrument>/<id>.lock`` with
``RENAME_NOREPLACE`` (an existing lock file is never replaced), then back.

This keeps the protocol of :mod:`koa_middleware.cache.locks`: while renamed,
the name ``<id>.lock`` leads to a file with one name, locked by the prune, so
any other process waits for it or sees it in use. When the name is taken back,
the slot's lock is let go and taken again: a process that opened the file
through the calibration's name meanwhile gets the lock, finds the name no
longer leads to it, and starts again on a new file; the slot is then dropped.

Where the system has no ``renameat2`` (not Linux, or a file system without
``RENAME_NOREPLACE``), :meth:`LockSlots.take` returns None and the caller
creates lock files as usual.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import uuid
from pathlib import Path

from .locks import locked_file

logger = logging.getLogger(__name__)

__all__ = ["LockSlots"]

_RENAME_NOREPLACE = 1


def _find_renameat2():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_renameat2 = _find_renameat2()


def _rename_no_replace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """``renameat2(..., RENAME_NOREPLACE)``; raises OSError (``EEXIST`` when ``dst`` exists)."""
    if _renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


def _leads_to(name: str, fd: int, dir_fd: int) -> bool:
    """Whether ``name`` in the folder ``dir_fd`` is the open file ``fd`` (as ``locks.leads_to``)."""
    try:
        named = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


class LockSlots:
    """Up to ``count`` reusable, held lock files of a prune.

    Parameters
    ----------
    tmp_fd, locks_fd : int
        Open descriptors of ``tmp/<instrument>/`` and ``locks/<instrument>/``.
    tmp_dir : Path
        ``tmp/<instrument>/`` (for messages).
    count : int
        How many slots at most (one per lock held at once).
    """

    def __init__(self, tmp_fd: int, locks_fd: int, tmp_dir: Path, count: int):
        self.tmp_fd = tmp_fd
        self.locks_fd = locks_fd
        self.tmp_dir = tmp_dir
        self.count = count
        self.enabled = _renameat2 is not None
        self._free: list[tuple[str, int]] = []
        self._made = 0

    def __repr__(self) -> str:
        return f"LockSlots({self.tmp_dir}, {len(self._free)} free)"

    def _new_slot(self) -> tuple[str, int] | None:
        if self._made >= self.count:
            return None
        name = f"{uuid.uuid4().hex}.prune-lock"
        fd = locked_file(self.tmp_dir / name, dir_fd=self.tmp_fd, timeout=0)
        self._made += 1
        return name, fd

    def take(self, lock_name: str) -> tuple[str, int] | None:
        """Hold the lock named ``lock_name`` (in the locks folder) through a slot.

        Returns
        -------
        tuple of (str, int) | None
            The slot (its name in the temporary folder, its held descriptor),
            now named ``lock_name``; None when no slot can be used: the name
            exists (someone holds or left that lock), or slots are unavailable.
        """
        if not self.enabled:
            return None
        slot = self._free.pop() if self._free else self._new_slot()
        if slot is None:
            return None
        name, fd = slot
        try:
            _rename_no_replace(self.tmp_fd, name, self.locks_fd, lock_name)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                self._free.append(slot)
                return None
            os.close(fd)
            if exc.errno == errno.ENOENT:  # the slot was cleaned away: drop it
                return self.take(lock_name)
            if exc.errno in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
                logger.debug("No RENAME_NOREPLACE here (%s): creating lock files instead", exc)
                self.enabled = False
                self._unlink(name)
                return None
            raise
        return slot

    def give_back(self, lock_name: str, slot: tuple[str, int]) -> None:
        """Take the name ``lock_name`` back into the slot and let go of the calibration's lock."""
        name, fd = slot
        if not _leads_to(lock_name, fd, self.locks_fd):
            os.close(fd)  # the name is gone (never while held, but whatever happened): drop it
            return
        try:
            _rename_no_replace(self.locks_fd, lock_name, self.tmp_fd, name)
        except OSError as exc:  # let go as any holder does: remove the name, then close
            logger.debug("Could not take back the lock %s into its slot: %s", lock_name, exc)
            try:
                os.unlink(lock_name, dir_fd=self.locks_fd)
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)
            return
        fcntl.flock(fd, fcntl.LOCK_UN)  # a process that opened it by the lock's name may go on
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # one did: it finds the name gone and starts again
            self._unlink(name)
            os.close(fd)
            return
        self._free.append(slot)

    def close(self) -> None:
        """Remove the free slots."""
        free, self._free = self._free, []
        for name, fd in free:
            try:
                self._unlink(name)
            finally:
                os.close(fd)

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.tmp_fd)
        except FileNotFoundError:
            pass

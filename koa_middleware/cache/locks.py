"""Lock files of the cache: one per calibration being written, removed after use.

A writer of calibration ``<id>`` holds an exclusive ``flock`` on
``locks/<instrument>/<id>.lock``. The file exists only while someone uses it:
the holder removes it before letting go, so lock files never pile up however
many calibrations a cache has seen. The protocol that makes removal safe:

1. open the name (creating it; never through a link), then ``flock`` it;
2. once locked, check that the name still leads to the locked file (same
   device and inode). A waiter whose file was removed (or replaced) by the
   previous holder finds it is not, lets go, and starts again on what the name
   leads to now. A waiter checks the name between tries too, since a prune
   takes the name away from a file it keeps holding
   (:mod:`~koa_middleware.cache.lock_slots`);
3. remove the name only while holding the lock on the file it leads to.

So at any moment at most one process holds a lock on the file the name leads
to. The system drops a lock when its holder dies; the file then stays until
the next holder removes it. A link planted at a lock's name is removed,
never followed.

Files are opened read-only to be locked: ``flock`` needs no write access, so a
lock file created by another account of a shared cache can always be locked.

Every name is taken relative to an open descriptor of its folder when the
caller gives one (``dir_fd``), so a folder swapped for a link after the caller
opened it is never entered.

A waiter that has waited :data:`NOTICE_AFTER` seconds says once which lock is
held and by which process (read from ``/proc/locks`` where the system has it);
with a timeout it gives up with :class:`~koa_middleware.errors.LockTimeoutError`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import LockTimeoutError, UnsafeCachePathError
from .permissions import FILE_MODE, match_folder_group

logger = logging.getLogger(__name__)

__all__ = [
    "NOTICE_AFTER",
    "held_lock",
    "lock_holder",
    "is_locked",
    "is_own_file",
    "leads_to",
    "locked_file",
    "release",
    "remove_planted",
    "try_lock",
]

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
#: Seconds a waiter waits before it logs which lock is held, and by what.
NOTICE_AFTER = 5.0
#: Longest pause between two tries of a lock waited for (seconds).
_MAX_POLL = 0.05


def _name(path: Path, dir_fd: int | None) -> str | Path:
    """The name to give the ``*at`` calls: the last component relative to ``dir_fd``."""
    return path.name if dir_fd is not None else path


@contextmanager
def held_lock(
    path: Path, *, dir_fd: int | None = None, timeout: float | None = None
) -> Iterator[None]:
    """Hold the exclusive lock named ``path``; remove the file before letting go.

    Parameters
    ----------
    path : Path
        The lock file's name (created when missing, never through a link).
    dir_fd : int | None
        An open descriptor of ``path``'s folder: the name is taken relative to it.
    timeout : float | None
        Seconds to wait for another holder; None waits as long as it takes.

    Raises
    ------
    UnsafeCachePathError
        If the name keeps being replaced, or a folder has it.
    LockTimeoutError
        If another process held the lock for longer than ``timeout``.

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
    fd = locked_file(path, dir_fd=dir_fd, timeout=timeout)
    try:
        yield
    finally:
        release(path, fd, dir_fd=dir_fd)


def is_locked(path: Path, *, dir_fd: int | None = None) -> bool:
    """Whether a running process holds a lock on the file named ``path`` (never waits).

    The file is not created: a missing file is a lock nobody holds. The
    answer is true only of the moment it was taken.

    Parameters
    ----------
    path : Path
        The lock file's name.
    dir_fd : int | None
        An open descriptor of ``path``'s folder: the name is taken relative to it.

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
        fd = os.open(_name(path, dir_fd), os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW, dir_fd=dir_fd)
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


def locked_file(
    path: Path,
    *,
    write: bool = False,
    dir_fd: int | None = None,
    timeout: float | None = None,
) -> int:
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
    dir_fd : int | None
        An open descriptor of ``path``'s folder: the name is taken relative to it.
    timeout : float | None
        Seconds to wait for another holder; None waits as long as it takes.

    Returns
    -------
    int
        The locked descriptor; closing it releases the lock.

    Raises
    ------
    UnsafeCachePathError
        If the name keeps being replaced.
    LockTimeoutError
        If another process held the lock for longer than ``timeout``.
    """
    fd = _lock_name(path, write, dir_fd, _Wait(path, timeout))
    assert fd is not None  # a wait never gives up without raising
    return fd


def try_lock(path: Path, *, dir_fd: int | None = None) -> int | None:
    """:func:`locked_file` (read-only) without waiting: None when another holder has it.

    Parameters
    ----------
    path : Path
        The lock file's name (created when missing, never through a link).
    dir_fd : int | None
        An open descriptor of ``path``'s folder: the name is taken relative to it.

    Returns
    -------
    int | None
        The locked descriptor (closing it releases the lock; remove the name
        first with :func:`release`), or None while a running process holds it.

    Raises
    ------
    UnsafeCachePathError
        If the name keeps being replaced.

    Examples
    --------
    >>> import tempfile
    >>> name = Path(tempfile.mkdtemp()) / "x.lock"
    >>> fd = try_lock(name)
    >>> try_lock(name) is None  # a second open file description: refused, not waited for
    True
    >>> release(name, fd)
    >>> name.exists()
    False
    """
    return _lock_name(path, False, dir_fd, None)


def release(path: Path, fd: int, *, dir_fd: int | None = None) -> None:
    """Remove the lock file ``path`` (if it is still ``fd``'s) and let go of ``fd``'s lock."""
    try:
        _remove_if_locked(path, fd, dir_fd)
    finally:
        os.close(fd)


def _lock_name(path: Path, write: bool, dir_fd: int | None, wait: _Wait | None) -> int | None:
    """The protocol of :func:`locked_file`; with no ``wait``, None when the lock is held."""
    access = os.O_RDWR if write else os.O_RDONLY
    name = _name(path, dir_fd)
    for _ in range(1000):
        created = True
        try:
            # A lock file exists only while in use: creating it is the usual case.
            fd = os.open(
                name,
                access | os.O_CREAT | os.O_EXCL | os.O_NONBLOCK | _NOFOLLOW,
                FILE_MODE,
                dir_fd=dir_fd,
            )
        except FileExistsError:  # held (or a planted link): open what is there
            created = False
            try:
                fd = os.open(name, access | os.O_NONBLOCK | _NOFOLLOW, dir_fd=dir_fd)
            except FileNotFoundError:
                continue  # its holder removed it meanwhile: make it again
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                remove_planted(path, "a lock file", dir_fd=dir_fd)
                continue
        try:
            if created:
                match_folder_group(fd, path.parent if dir_fd is None else dir_fd)
            info = os.fstat(fd)
            if info.st_nlink == 0:
                continue  # its last holder removed it: open what the name leads to now
            if not is_own_file(info):
                if leads_to(path, fd, dir_fd=dir_fd):  # a second name of another file
                    remove_planted(path, "a lock file", dir_fd=dir_fd)
                continue
            if wait is not None:
                if not wait.lock(fd, dir_fd):
                    continue  # the name was taken away from this file: open what it is now
            else:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return None
            if leads_to(path, fd, dir_fd=dir_fd):
                result, fd = fd, -1
                return result
        finally:
            if fd >= 0:
                os.close(fd)
    raise UnsafeCachePathError(
        f"Could not lock {path}: its name keeps being replaced. Check what else writes "
        "into the cache's folders."
    )


class _Wait:
    """One wait for a lock, across the files its name leads to in turn.

    Says once, after :data:`NOTICE_AFTER` seconds (or half the timeout, when
    that is shorter), which lock is held and by what; raises when the timeout
    is over.
    """

    def __init__(self, path: Path, timeout: float | None):
        self.path = path
        self.timeout = timeout
        self.start: float | None = None
        self.noticed = False
        self.notice_after = NOTICE_AFTER if timeout is None else min(NOTICE_AFTER, timeout / 2)

    def lock(self, fd: int, dir_fd: int | None = None) -> bool:
        """Take the exclusive lock of ``fd``, waiting as the settings say.

        Between tries, the name is checked: a holder may take it away from the
        file while still holding that file's lock (a prune gives back the lock
        files it reuses, :mod:`koa_middleware.cache.lock_slots`), and then
        waiting on that file would never end.

        Returns
        -------
        bool
            True once locked; False when the name no longer leads to ``fd``
            (start again on what it leads to now).

        Raises
        ------
        LockTimeoutError
            If the timeout passed while another process held it.
        """
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        if self.start is None:
            self.start = time.monotonic()
        pause = 0.001
        while True:
            waited = time.monotonic() - self.start
            if self.timeout is not None and waited >= self.timeout:
                raise self._timed_out(fd, waited)
            if not self.noticed and waited >= self.notice_after:
                self._notice(fd, waited)  # said once
            # flock has no timeout: try again after a pause that grows to _MAX_POLL
            time.sleep(pause)
            pause = min(pause * 2, _MAX_POLL)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if not leads_to(self.path, fd, dir_fd=dir_fd):
                    return False

    def _notice(self, fd: int, waited: float) -> None:
        self.noticed = True
        logger.warning(
            "Waiting for the lock %s, held %s, for %.1f s so far (another process is writing "
            "that calibration).%s",
            self.path,
            _describe(lock_holder(fd)),
            waited,
            "" if self.timeout is None else f" Giving up after {self.timeout:g} s.",
        )

    def _timed_out(self, fd: int, waited: float) -> LockTimeoutError:
        holder = lock_holder(fd)
        kill = f" (or stop it: kill {holder})" if holder is not None else ""
        return LockTimeoutError(
            f"Gave up after {waited:.1f} s waiting for the lock {self.path}, held "
            f"{_describe(holder)}: another process is writing that calibration. Let it "
            f"finish{kill} and try again, or raise KOA_LOCK_TIMEOUT (unset, the store waits "
            "as long as it takes).",
            path=str(self.path),
            holder=holder,
        )


def lock_holder(fd: int) -> int | None:
    """The id of the process holding a ``flock`` on the open file ``fd``, where known.

    Read from ``/proc/locks`` (Linux); None where the system does not say.

    Examples
    --------
    >>> import tempfile
    >>> fd = os.open(tempfile.mkstemp()[1], os.O_RDONLY)
    >>> fcntl.flock(fd, fcntl.LOCK_EX)
    >>> lock_holder(fd) in (os.getpid(), None)
    True
    >>> os.close(fd)
    """
    info = os.fstat(fd)
    wanted = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read(1 << 22).splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters show "->" first
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == wanted:
                return int(fields[4])
        except ValueError:
            continue
    return None


def _describe(holder: int | None) -> str:
    """``'by process 1234 (python3)'``, or what is known of the holder."""
    if holder is None:
        return "by another process (the system does not say which)"
    try:
        with open(f"/proc/{holder}/comm", encoding="utf-8", errors="replace") as handle:
            command = handle.read(64).strip()
    except OSError:
        command = ""
    shown = "".join(c if c.isprintable() else "?" for c in command)
    return f"by process {holder}" + (f" ({shown})" if shown else "")


def leads_to(path: Path, fd: int, *, dir_fd: int | None = None) -> bool:
    """Whether the name ``path`` leads to the open file ``fd`` (not through a link).

    Parameters
    ----------
    path : Path
        A file name.
    fd : int
        An open file.
    dir_fd : int | None
        An open descriptor of ``path``'s folder: the name is taken relative to it.

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
        named = os.lstat(_name(path, dir_fd), dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _remove_if_locked(path: Path, fd: int, dir_fd: int | None = None) -> None:
    """Remove the name ``path`` if it still leads to ``fd``, whose lock the caller holds."""
    if leads_to(path, fd, dir_fd=dir_fd):
        try:
            os.unlink(_name(path, dir_fd), dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except PermissionError as exc:
            # a folder this account may not change: the file stays, still safe to reuse
            logger.debug("Could not remove the lock file %s: %s", path, exc)


def is_own_file(info: os.stat_result) -> bool:
    """A regular file with one name: nothing else can see or change its bytes through a link."""
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def remove_planted(
    path: Path, what: str, quiet: bool = False, *, dir_fd: int | None = None
) -> None:
    """Remove the name ``path`` (a link is removed itself, never what it points to).

    With ``dir_fd`` (an open descriptor of ``path``'s folder) the name is taken
    relative to it.

    Raises
    ------
    UnsafeCachePathError
        If a folder has the name.
    """
    name = _name(path, dir_fd)
    try:
        info = os.lstat(name, dir_fd=dir_fd)
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
            os.readlink(name, dir_fd=dir_fd),
            what,
        )
    elif not quiet or not is_own_file(info):
        logger.warning("Replaced %s, which was not a file the store made (%s).", path, what)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)

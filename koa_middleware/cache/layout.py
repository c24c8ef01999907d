"""The layout of the local calibration cache, and putting files into it atomically.

::

    <cache_dir>/
      calibrations/<instrument>/<filename>     the files
      database/<instrument>_calibrations.db    SQLite
      tmp/<instrument>/                        files being written (cleaned on start)
      locks/<instrument>/<id>.lock             one writer per calibration id (exists
                                               only while in use)

Every path built from a record goes through :meth:`CacheLayout.path_for`. Files
and folders are created as :mod:`koa_middleware.cache.permissions` says: the
creator's umask decides their modes, and they keep the group of the cache root.

Other accounts of a cache's group may rename and replace its folders at any
moment. So every walk and every removal in the cache goes through descriptors
of its folders, opened one level at a time from the root without following a
link (:meth:`CacheLayout.open_folder`): a folder swapped for a link is never
entered, whenever the swap happens, and nothing checked before a wait (for a
lock, for the database) is relied on after it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CacheFullError, InvalidRecordError, UnsafeCachePathError
from ..records import is_cal_id, safe_path, validate_cal_id
from .locks import held_lock, is_locked, leads_to, locked_file
from .locks import is_own_file as _is_own_file
from .locks import remove_planted as _remove_planted
from .permissions import FILE_MODE, make_folder, make_folders, match_folder_group

logger = logging.getLogger(__name__)

__all__ = [
    "CacheLayout",
    "PendingWrite",
    "place_file",
    "create_private_file",
    "open_private_file",
    "is_disk_full",
    "cache_full_error",
]

#: Opened so that a link at the last component is never followed.
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
#: A folder of the cache, opened relative to the one above it, never through a link.
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW
#: A folder only passed through on the way down (``O_PATH`` where the system has it).
_PASS = getattr(os, "O_PATH", os.O_RDONLY)
#: Errors that mean "no room for this file here".
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class CacheLayout:
    """Paths of one instrument's part of a calibration cache.

    Parameters
    ----------
    cache_dir : str | Path
        The cache's root folder; ``~`` is expanded and the path made absolute.
    instrument : str
        The instrument name (lower-cased here).
    lock_timeout : float | None
        Seconds :meth:`lock` waits for another process's lock before raising
        :class:`~koa_middleware.errors.LockTimeoutError`; None waits as long as
        it takes.

    Examples
    --------
    >>> layout = CacheLayout("/tmp/koa_cache", "HISPEC")
    >>> layout.path_for("dark.fits").as_posix()
    '/tmp/koa_cache/calibrations/hispec/dark.fits'
    """

    def __init__(
        self, cache_dir: str | os.PathLike, instrument: str, *, lock_timeout: float | None = None
    ):
        self.root = Path(cache_dir).expanduser().absolute()
        self.instrument = instrument.lower()
        self.calibrations_dir = self.root / "calibrations" / self.instrument
        self.database_dir = self.root / "database"
        self.tmp_dir = self.root / "tmp" / self.instrument
        self.locks_dir = self.root / "locks" / self.instrument
        #: Seconds :meth:`lock` waits for another holder (``KOA_LOCK_TIMEOUT``); None: no limit.
        self.lock_timeout = lock_timeout
        self._created = False

    def create(self) -> None:
        """Create the cache folders if they do not exist yet (once per layout object).

        Raises
        ------
        UnsafeCachePathError
            If a cache folder is a link leading out of the cache, or not a folder.
        """
        if self._created:
            return
        make_folders(self.root)
        make_folder(self.database_dir)
        self.check_folders()
        self._created = True

    def _own_folders(self) -> tuple[Path, ...]:
        """The folders the store writes files into, each after its parent."""
        return (
            self.database_dir,
            self.calibrations_dir.parent,
            self.calibrations_dir,
            self.tmp_dir.parent,
            self.tmp_dir,
            self.locks_dir.parent,
            self.locks_dir,
        )

    def check_folders(self) -> None:
        """Refuse cache folders that are links leading out of the cache, or not folders.

        Missing folders are created. Cheap (one ``lstat`` per folder) when no
        folder is a link, so it runs before every locked write.

        Raises
        ------
        UnsafeCachePathError
            Naming the folder and what to do.
        """
        for folder in self._own_folders():
            try:
                info = os.lstat(folder)
            except FileNotFoundError:
                make_folder(folder)  # new, or removed while the store ran
                continue
            if stat.S_ISDIR(info.st_mode):
                continue
            if stat.S_ISLNK(info.st_mode):
                target = os.path.realpath(folder)
                inside = _inside(target, os.path.realpath(self.root))
                if inside and os.path.isdir(target):
                    continue
                raise UnsafeCachePathError(
                    f"The cache folder {folder} is a link to {target}, "
                    f"{'outside the cache' if not inside else 'which is not a folder'}; the "
                    f"store writes nothing through it. Remove the link (the store recreates "
                    f"the folder), or point KOA_CALIBRATION_CACHE at the real cache folder."
                )
            raise UnsafeCachePathError(
                f"{folder} is not a folder; remove it (the store recreates the folder)."
            )

    def open_folder(self, folder: Path) -> int:
        """Open a folder of the cache one level at a time from the root, never through a link.

        Each level is opened relative to the one above it with ``O_NOFOLLOW``,
        so what the descriptor leads to is a folder inside the cache whatever
        is renamed or replaced meanwhile. A link met on the way is followed
        only to a folder inside the cache, and then by that folder's own path
        from the root (the same way). The root itself is taken as configured.

        Parameters
        ----------
        folder : Path
            A folder at or below :attr:`root`.

        Returns
        -------
        int
            A descriptor of the folder (``O_DIRECTORY``); the caller closes it.

        Raises
        ------
        FileNotFoundError
            If the folder, or one above it, is missing.
        UnsafeCachePathError
            If a level is a link leading out of the cache, or not a folder.
        """
        parts = Path(folder).relative_to(self.root).parts
        for _ in range(8):
            # levels above the folder are only passed through: no read permission needed
            fd = os.open(
                self.root, (_PASS if parts else os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
            )
            try:
                for level, part in enumerate(parts):
                    flags = (
                        _FOLDER if level == len(parts) - 1 else _PASS | os.O_DIRECTORY | _NOFOLLOW
                    )
                    try:
                        below = os.open(part, flags, dir_fd=fd)
                    except OSError as exc:
                        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                            raise
                        parts = self._through_link(fd, parts, level)
                        break
                    os.close(fd)
                    fd = below
                else:
                    result, fd = fd, -1
                    return result
            finally:
                if fd >= 0:
                    os.close(fd)
        raise UnsafeCachePathError(
            f"Could not open the cache folder {folder}: its links keep changing. Replace "
            "the links in the cache by folders."
        )

    def _through_link(self, fd: int, parts: tuple[str, ...], level: int) -> tuple[str, ...]:
        """The path from the root to follow instead of the link ``parts[level]`` (in ``fd``).

        Raises
        ------
        UnsafeCachePathError
            If the name is not a link, or its target is not a folder inside the cache.
        """
        name = self.root.joinpath(*parts[: level + 1])
        info = os.lstat(parts[level], dir_fd=fd)
        if not stat.S_ISLNK(info.st_mode):
            raise UnsafeCachePathError(
                f"{name} is not a folder; remove it (the store recreates the folder)."
            )
        target = os.path.realpath(name)
        root = os.path.realpath(self.root)
        if target == root or not _inside(target, root) or not os.path.isdir(target):
            raise UnsafeCachePathError(
                f"The cache folder {name} is a link to {target}, outside the cache or not a "
                "folder; the store enters nothing through it. Remove the link (the store "
                "recreates the folder)."
            )
        return Path(target).relative_to(root).parts + parts[level + 1 :]

    @contextmanager
    def opened_folder(self, folder: Path) -> Iterator[int]:
        """:meth:`open_folder` for the length of a block.

        Raises
        ------
        FileNotFoundError, UnsafeCachePathError
            As :meth:`open_folder`.
        """
        fd = self.open_folder(folder)
        try:
            yield fd
        finally:
            os.close(fd)

    def prepare_database_file(self, filename: str) -> os.stat_result:
        """Make sure ``database/<filename>`` is a file of the cache (made when missing).

        The database folder is opened as :meth:`open_folder` does, and the file
        in it with ``O_NOFOLLOW``; a new file gets mode ``0o666`` less the umask
        and the folder's group, as SQLite alone would not give it. The file is
        closed again before SQLite opens it by its path (closing a descriptor
        of a file SQLite has open would drop SQLite's locks on it); check
        afterwards with :meth:`check_database_file` that SQLite found this file.

        Parameters
        ----------
        filename : str
            The database's file name (a plain name, without a folder).

        Returns
        -------
        os.stat_result
            The file's status, for :meth:`check_database_file`.

        Raises
        ------
        UnsafeCachePathError
            If the database folder leads out of the cache, or the file's name is
            a link, a folder, or a second name of another file.
        """
        path = self.database_dir / filename
        with self.opened_folder(self.database_dir) as folder:
            flags = os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW
            try:
                fd = os.open(filename, flags | os.O_CREAT | os.O_EXCL, FILE_MODE, dir_fd=folder)
                match_folder_group(fd, folder)
            except FileExistsError:
                try:
                    fd = os.open(filename, flags, dir_fd=folder)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.EISDIR):
                        raise
                    raise _not_a_database(path) from None
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        if not _is_own_file(info):
            raise _not_a_database(path)
        return info

    def check_database_file(self, filename: str, prepared: os.stat_result) -> None:
        """Check that ``database/<filename>``, which SQLite opens by its path, is ``prepared``.

        Raises
        ------
        UnsafeCachePathError
            If the name or a folder above it was replaced meanwhile.
        """
        path = self.database_dir / filename
        try:
            named = os.stat(path)
        except FileNotFoundError:
            named = None
        if named is None or (named.st_dev, named.st_ino) != (prepared.st_dev, prepared.st_ino):
            raise UnsafeCachePathError(
                f"The database {path} was replaced while the store opened it (its folder or "
                "its name now leads to another file). Check what else writes into the cache's "
                "folders, and remove any link among them."
            )

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
        calibration locked. The holder removes the lock file before letting go,
        so lock files do not pile up (:mod:`koa_middleware.cache.locks` says why
        that is safe). A link planted at the lock's path is removed and
        replaced, never followed. After :data:`~.locks.NOTICE_AFTER` seconds of
        waiting, a warning names the lock and its holder; past
        :attr:`lock_timeout` the wait ends.

        Raises
        ------
        LockTimeoutError
            If another process held the lock for longer than :attr:`lock_timeout`.
        UnsafeCachePathError
            If the locks folder is a link leading out of the cache.

        Examples
        --------
        >>> with layout.lock(cal_id):  # doctest: +SKIP
        ...     pass  # only one writer of cal_id in here, across processes
        """
        path = self.lock_path(cal_id)
        self.check_folders()
        with (
            self.opened_folder(self.locks_dir) as folder,
            held_lock(path, dir_fd=folder, timeout=self.lock_timeout),
        ):
            yield

    def lock_path(self, cal_id: str) -> Path:
        """The name of calibration ``cal_id``'s lock file (present only while in use).

        Raises
        ------
        InvalidRecordError
            If ``cal_id`` is not a calibration id.
        """
        return self.locks_dir / f"{validate_cal_id(cal_id)}.lock"

    def in_use(self, cal_id: str) -> bool:
        """Whether a running process holds the lock of calibration ``cal_id`` now.

        Never waits and never creates a lock file. The answer is true only of
        the moment it was taken: a process may take or release the lock right
        after.

        Parameters
        ----------
        cal_id : str
            The calibration's id.

        Returns
        -------
        bool
            True while a live process holds the lock (within :meth:`lock`).

        Raises
        ------
        InvalidRecordError
            If ``cal_id`` is not a calibration id.

        Examples
        --------
        >>> layout.in_use(cal_id)  # doctest: +SKIP
        False
        """
        path = self.lock_path(cal_id)
        try:
            with self.opened_folder(self.locks_dir) as folder:
                return is_locked(path, dir_fd=folder)
        except FileNotFoundError:
            return False

    def clean_temp(self) -> None:
        """Remove leftovers of interrupted writes from the temporary folder.

        Only files older than a minute go, so that a write under way in another
        process is left alone; partial downloads (``*.download``), which a later
        fetch of the same calibration resumes, are kept for a day. The folder is
        walked through its descriptor (:meth:`open_folder`), and every entry
        judged and removed relative to it: a link is removed itself, and a
        folder or link swapped in at any moment is never entered. A temporary
        folder that is a link out of the cache is left alone, with a warning.
        """
        try:
            folder = self.open_folder(self.tmp_dir)
        except FileNotFoundError:
            return
        except UnsafeCachePathError as exc:
            logger.warning("Did not clean the temporary folder: %s", exc)
            return
        try:
            _remove_stale(folder, self.tmp_dir, time.time())
        finally:
            os.close(folder)

    @contextmanager
    def pending_write(self, cal_id: str) -> Iterator[PendingWrite]:
        """Mark a write as under way, for crash recovery.

        While the block runs, ``tmp/<instrument>/<id>.pending`` exists and is locked
        by this process; call ``note(filename)`` on what the block yields before
        renaming a file into place. Leave the block only after the record is
        committed, or, on error, after removing the placed file: a marker left by a
        killed process tells :meth:`recover_pending` to remove a file whose record
        never landed. A link (or a second name of another file) planted at the
        marker's path is removed and replaced, never written through.
        """
        marker = self.tmp_dir / f"{validate_cal_id(cal_id)}.pending"
        self.check_folders()
        with self.opened_folder(self.tmp_dir) as folder:
            fd = locked_file(marker, write=True, dir_fd=folder)
            try:
                yield PendingWrite(fd)
            finally:
                try:
                    if leads_to(marker, fd, dir_fd=folder):
                        os.unlink(marker.name, dir_fd=folder)
                finally:
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
        try:
            folder = self.open_folder(self.tmp_dir)
        except FileNotFoundError:
            return removed
        except UnsafeCachePathError as exc:
            logger.warning("Did not look for interrupted registrations: %s", exc)
            return removed
        try:
            with os.scandir(folder) as entries:
                names = [e.name for e in entries if e.name.endswith(".pending")]
            for name in names:
                path = self._recover_marker(folder, self.tmp_dir / name, record_owns)
                if path is not None:
                    removed.append(path)
        finally:
            os.close(folder)
        return removed

    def _recover_marker(
        self, folder: int, marker: Path, record_owns: Callable[[str, str], bool]
    ) -> Path | None:
        """Act on one crash-recovery marker (in the open folder ``folder``).

        Returns
        -------
        Path | None
            The file removed, if any.
        """
        try:
            # read-only: a marker of another account of the cache's group may be locked
            fd = os.open(marker.name, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW, dir_fd=folder)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            _remove_planted(marker, "a crash-recovery marker", dir_fd=folder)
            return None
        try:
            info = os.fstat(fd)
            if info.st_nlink == 0:
                return None  # its writer finished and removed it
            if not _is_own_file(info) or not is_cal_id(marker.stem):
                _remove_planted(marker, "a crash-recovery marker", dir_fd=folder)
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # its writer is alive
            if not leads_to(marker, fd, dir_fd=folder):
                return None  # finished meanwhile; the name may be a new writer's
            filename = os.read(fd, 4096).decode("utf-8", "replace")
            removed = None
            if filename and not record_owns(marker.stem, filename):
                removed = self._remove_placed(filename, marker)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(marker.name, dir_fd=folder)
            return removed
        finally:
            os.close(fd)

    def _remove_placed(self, filename: str, marker: Path) -> Path | None:
        """Remove the file an interrupted registration placed (a link itself, never its target)."""
        path = self._placed_path(filename, marker)
        if path is None:
            return None
        try:
            with self.opened_folder(self.calibrations_dir) as calibrations:
                os.unlink(path.name, dir_fd=calibrations)
        except (FileNotFoundError, IsADirectoryError):
            return None
        logger.warning("Removed %s: its registration was interrupted", path)
        return path

    def _placed_path(self, filename: str, marker: Path) -> Path | None:
        """The cache path a marker names, or None (with a warning) for a name that is not plain."""
        try:
            return self.path_for(filename)
        except InvalidRecordError:
            logger.warning("Ignored %s: it names %r, not a plain file name", marker, filename)
            return None


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

    Only a regular file of one name is moved; a link at ``destination`` is
    replaced (the rename takes the link's place), never written through. The
    file takes the group of ``destination``'s folder when it has another one.

    Raises
    ------
    UnsafeCachePathError
        If ``source`` is a link, not a regular file, or has other names too.
    """
    info = os.lstat(source)
    if not _is_own_file(info):
        raise UnsafeCachePathError(
            f"{source} is not a regular file of one name (a link or a second name of another "
            "file was put in its place); nothing was moved into the cache. Remove it and try "
            "again."
        )
    if not synced or info.st_gid != os.stat(destination.parent).st_gid:
        fd = os.open(source, os.O_RDONLY | _NOFOLLOW)
        try:
            match_folder_group(fd, destination.parent)  # the group of the folder it joins
            if not synced:
                os.fsync(fd)
        finally:
            os.close(fd)
    if os.path.islink(destination):
        logger.warning(
            "Replacing the link %s (to %s) with the calibration file; the file it points to "
            "is left alone.",
            destination,
            os.readlink(destination),
        )
    os.replace(source, destination)


def create_private_file(path: Path) -> int:
    """Create ``path`` as a new, empty file and return a read-write descriptor.

    Whatever has the name already (a stale file, or a link planted there) is
    removed first, never followed: the file is created with ``O_EXCL`` and
    ``O_NOFOLLOW``, so no byte is ever written elsewhere.

    Raises
    ------
    UnsafeCachePathError
        If a folder has the name, or the name keeps coming back.
    """
    for _ in range(5):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, FILE_MODE)
        except FileExistsError:
            _remove_planted(path, "a file being written", quiet=True)
            continue
        match_folder_group(fd, path.parent)
        return fd
    raise UnsafeCachePathError(
        f"Could not create {path}: something keeps putting a file or link there. Check "
        "what else writes into the cache folder."
    )


def open_private_file(path: Path, *, append: bool = False) -> int:
    """Open an existing file of the store (such as a partial download) to add to it.

    The file is opened with ``O_NOFOLLOW``. A link, anything but a regular file,
    or a file with other names too (a hard link to a file elsewhere) is not ours:
    its name is removed (never what it points to) and a new, empty file created.
    A missing file is created empty.

    Returns
    -------
    int
        A read-write descriptor positioned at the start (writes go to the end
        with ``append``).
    """
    flags = os.O_RDWR | os.O_NONBLOCK | _NOFOLLOW | (os.O_APPEND if append else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return _new_file(path, append)
    except PermissionError:
        # another account's partial file, which this one may not add to: start afresh
        _remove_planted(path, "a partial file", quiet=True)
        return _new_file(path, append)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        _remove_planted(path, "a partial file")
        return _new_file(path, append)
    if _is_own_file(os.fstat(fd)):
        return fd
    os.close(fd)
    _remove_planted(path, "a partial file")
    return _new_file(path, append)


def _new_file(path: Path, append: bool) -> int:
    fd = create_private_file(path)
    if append:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
    return fd


def is_disk_full(exc: BaseException) -> bool:
    """True for an ``OSError`` that means "no room": ENOSPC, EDQUOT or EFBIG."""
    return isinstance(exc, OSError) and exc.errno in _FULL


def cache_full_error(exc: OSError, folder: Path, needed: int | None, what: str) -> CacheFullError:
    """The :class:`CacheFullError` for a write into ``folder`` that failed with ``exc``.

    Parameters
    ----------
    exc : OSError
        The failed write (ENOSPC, EDQUOT or EFBIG).
    folder : Path
        The cache folder written into.
    needed : int | None
        Bytes the whole file needs, when known.
    what : str
        What was being written (``"the download of dark.fits"``).

    Returns
    -------
    CacheFullError
        Naming the folder, the bytes needed and free, and what to do.
    """
    try:
        free: int | None = shutil.disk_usage(folder).free
    except OSError:
        free = None
    need = f"needs {needed:,} bytes" if needed is not None else "needs more room"
    have = f"; {free:,} bytes are free there now" if free is not None else ""
    if exc.errno == errno.EFBIG:
        cause = "the file-size limit of this process (ulimit -f) was reached"
        advice = "raise the limit (ulimit -f unlimited)"
    elif exc.errno == errno.EDQUOT:
        cause = "the disk quota is used up"
        advice = "free space within your quota"
    else:
        cause = "the file system is full"
        advice = "free space on that file system"
    return CacheFullError(
        f"The calibration cache folder {folder} has no room: {cause}. {what[:1].upper()}"
        f"{what[1:]} {need}{have}. The partial file was removed; {advice}, or point "
        "KOA_CALIBRATION_CACHE at a larger disk, and try again.",
        folder=str(folder),
        needed=needed,
        code=exc.errno,
    )


def _not_a_database(path: Path) -> UnsafeCachePathError:
    return UnsafeCachePathError(
        f"{path} is a link, a folder or a second name of another file, not the cache's "
        "database; the store opens nothing through it. Remove it (the store creates an empty "
        "database; `koa-cal sync` brings the archive's records back)."
    )


def _remove_stale(folder: int, where: Path, now: float) -> None:
    """Remove the stale entries of the open folder ``folder`` (:meth:`CacheLayout.clean_temp`)."""
    with os.scandir(folder) as scan:
        entries = list(scan)
    for entry in entries:
        suffix = Path(entry.name).suffix
        if suffix == ".pending":
            continue  # crash-recovery markers: recover_pending handles them
        max_age = 86_400 if suffix == ".download" else 60
        try:
            info = entry.stat(follow_symlinks=False)  # relative to the folder's descriptor
            if info.st_mtime >= now - max_age:
                continue
            if stat.S_ISDIR(info.st_mode):
                # shutil walks it by descriptors too, and never enters a link
                shutil.rmtree(entry.name, ignore_errors=True, dir_fd=folder)
            else:
                os.unlink(entry.name, dir_fd=folder)
            logger.debug("Removed stale temporary file %s", where / entry.name)
        except (FileNotFoundError, IsADirectoryError):
            continue


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)

"""Opening a SQLite file in WAL mode so that several processes can share it.

SQLite's busy timeout covers ordinary locks, but not the switch of a new
file into WAL mode: a process that holds a shared lock while another asks
for the switch gets ``database is locked`` at once, because waiting could
deadlock. Processes that open one new cache together (a cluster's workers
starting at the same moment) meet exactly that, so the switch is retried
here until the timeout. Both the cache and the archive's SQLite catalog use it.

SQLite creates a database file ``rw-r--r--`` whatever the umask, and gives its
``-wal`` and ``-shm`` files the database file's mode. :func:`connect` therefore
creates a new database file itself, with mode ``0o666`` less the umask and the
group of its folder, so that under ``umask 002`` every member of the folder's
group may write the database (and its ``-wal`` and ``-shm``), as a cache shared
by one Unix group needs. :func:`connect_readonly` opens a database that this
process must never change.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import sqlite3
import stat
import time
import urllib.parse
from pathlib import Path

from .errors import UnsafeCachePathError

logger = logging.getLogger(__name__)

__all__ = [
    "check_regular_files",
    "connect",
    "connect_readonly",
    "create_database_file",
    "switch_to_wal",
]


def connect(db_path: str | Path, timeout: float = 30.0) -> sqlite3.Connection:
    """Open ``db_path`` in autocommit mode, in WAL mode, with a busy timeout.

    Parameters
    ----------
    db_path : str | Path
        The SQLite file (created if missing), or ``':memory:'``.
    timeout : float
        Seconds to wait for other processes' locks, including while the
        file is switched to WAL mode.

    Returns
    -------
    sqlite3.Connection
        A connection usable from any thread (callers serialize its use).

    Raises
    ------
    sqlite3.OperationalError
        If the file stays locked for longer than ``timeout``.

    Examples
    --------
    >>> conn = connect(":memory:")
    >>> conn.execute("SELECT 1").fetchone()
    (1,)
    """
    on_disk = str(db_path) != ":memory:"
    if on_disk:
        create_database_file(db_path)
    conn = sqlite3.connect(
        str(db_path), timeout=timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    if on_disk:
        switch_to_wal(conn, timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
        # room for the indexes of ~100,000 records, so bulk adds stay in memory
        conn.execute("PRAGMA cache_size = -65536")
        for suffix in ("-wal", "-shm"):
            _match_folder_group(f"{db_path}{suffix}")
    return conn


def connect_readonly(db_path: str | Path, timeout: float = 30.0) -> sqlite3.Connection:
    """Open an existing SQLite file read-only (URI ``mode=ro``), with a busy timeout.

    The connection takes SQLite's usual locks, so it reads consistent
    snapshots while other processes write. It never changes the file, and
    never treats it as immutable: ``immutable=1`` would let SQLite skip the
    locks and trust its cache, which is wrong while anyone updates the file.
    A database in WAL mode needs its ``-shm`` file: when that file is missing
    and the folder is not writable, opening fails with
    ``sqlite3.OperationalError`` (callers may then read a copy).

    Parameters
    ----------
    db_path : str | Path
        The SQLite file; it must exist.
    timeout : float
        Seconds to wait for other processes' locks.

    Returns
    -------
    sqlite3.Connection
        An autocommit connection usable from any thread (callers serialize its use).

    Raises
    ------
    sqlite3.OperationalError
        If the file cannot be opened or read.
    UnsafeCachePathError
        If the file, its ``-wal`` or its ``-shm`` is a link or not a regular
        file (a FIFO would make SQLite wait forever, ``/dev/zero`` read forever).

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "x.db"
    >>> connect(path).close()
    >>> connect_readonly(path).execute("PRAGMA query_only").fetchone()
    (0,)
    """
    check_regular_files(db_path)
    uri = "file:" + urllib.parse.quote(str(Path(db_path).absolute())) + "?mode=ro"
    conn = sqlite3.connect(
        uri, timeout=timeout, isolation_level=None, check_same_thread=False, uri=True
    )
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return conn


def check_regular_files(db_path: str | Path) -> None:
    """Refuse a database whose file, ``-wal`` or ``-shm`` is there but not a regular file.

    SQLite follows a link at ``-wal``, and would read a FIFO there (waiting
    forever for a writer) or a device (``/dev/zero``) as a file; so those are
    looked at first (``lstat``), and only missing files or regular ones pass.

    Raises
    ------
    UnsafeCachePathError
        Naming the file and what it is.

    Examples
    --------
    >>> check_regular_files("/nonexistent/x.db")
    """
    for suffix in ("", "-wal", "-shm"):
        path = f"{db_path}{suffix}"
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if not stat.S_ISREG(info.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else _kind(info.st_mode)
            raise UnsafeCachePathError(
                f"The database file {path} is {kind}, not a regular file; it is not opened. "
                "Remove it (a database's files are always plain files)."
            )


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def create_database_file(db_path: str | Path) -> bool:
    """Create an empty database file with mode ``0o666`` less the umask, if it is missing.

    The new file takes the group of its folder (when this process may give it),
    so a folder of a shared group keeps the database that group's. A link at
    the name is never followed (SQLite refuses to open it).

    Parameters
    ----------
    db_path : str | Path
        The database file.

    Returns
    -------
    bool
        True when the file was created here.

    Examples
    --------
    >>> import tempfile
    >>> create_database_file(Path(tempfile.mkdtemp()) / "x.db")
    True
    """
    try:
        fd = os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    except FileExistsError:
        return False
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False  # SQLite says what is wrong when it opens the file
    os.close(fd)
    _match_folder_group(db_path)
    return True


def _match_folder_group(path: str | Path) -> None:
    """Give ``path`` (a file this process owns) the group of its folder, when it can."""
    try:
        info = os.lstat(path)
        folder_gid = os.stat(os.path.dirname(os.path.abspath(path))).st_gid
    except FileNotFoundError:
        return
    mine = info.st_uid == os.geteuid() or os.geteuid() == 0
    if info.st_gid == folder_gid or not mine or not stat.S_ISREG(info.st_mode):
        return
    try:
        os.chown(path, -1, folder_gid, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EACCES, errno.ENOENT):
            raise
        logger.debug("Could not give %s the group of its folder: %s", path, exc)


def switch_to_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode (it stays so), retrying while others hold locks.

    Parameters
    ----------
    conn : sqlite3.Connection
        An open connection to the file.
    timeout : float
        Seconds to keep retrying before the lock error is raised.

    Raises
    ------
    sqlite3.OperationalError
        If the file stays locked for longer than ``timeout``, or on any other error.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            logger.debug("waiting to switch %s to WAL mode: %s", conn, exc)
            time.sleep(random.uniform(0.005, 0.05))

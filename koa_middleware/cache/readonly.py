"""Read-only caches searched before the store's own (``KOA_CALIBRATION_CACHE_READONLY``).

A compute cluster keeps one cache on a shared file system, filled on one
machine by ``koa-cal sync --files``; its workers name it in
``KOA_CALIBRATION_CACHE_READONLY`` (several folders separated by
``os.pathsep``) and each machine keeps a writable cache of its own for what the
shared one lacks.

Records
    The records of a read-only cache that the writable cache's database lacks
    (by id) are copied into it, so every selector, query and lookup (even a
    pipeline's own SQL) sees the union of both; a record the writable cache
    already has wins. The copy is incremental (by SQLite ``rowid``) and runs
    when the store opens and whenever the read-only database's files change
    (a few ``stat`` calls per lookup). A record of a read-only cache that
    changes after it was copied is not copied again, but every retraction the
    read-only cache knows is added whenever its database changes, so a
    calibration withdrawn there (or on the archive that fills it) is never
    chosen here. Retractions are only added: an undone retraction comes from
    the archive's changes.
Files
    A file found in a read-only cache is checked against its record (size,
    MD5) as the store checks its own, and served in place: the path returned
    is in the read-only cache. A file that is missing or does not match is
    downloaded into the writable cache.
Opening the databases
    Each read-only database is opened with the SQLite URI ``mode=ro`` for the
    time of one read, then closed, so it is never changed and never held open.
    SQLite's locks keep each read consistent while another process of the
    same machine updates the database. ``immutable=1`` is never used: it tells
    SQLite the file cannot change, which is false while the cache is updated.
    A database in WAL mode needs its ``-shm`` file; when that file is missing
    and the folder is not writable (the usual case for a read-only mount when
    no writer has the database open), the database and its ``-wal`` are
    copied into the writable cache's ``tmp`` folder, the copy is kept only
    when the files did not change while it was made, and it is read and
    removed at once. Every file of a read-only database is first checked to
    be a regular file (not a link, a FIFO or a device); a copy reads only
    regular files, opened without following a link, and never more bytes
    than they had when opened. A cache that fails these checks is skipped
    with a warning, and looked at again when its files change.

Limits: SQLite's WAL index is shared memory, coherent only among the
processes of one machine. While a writer on *another* machine is updating the
database, a read may fail (it is logged and tried again at the next lookup)
or, on a network file system whose locks do not work, see a mix of old and
new pages; run ``koa-cal sync --files`` when the workers are idle, or on the
file server itself, to be safe. Network file systems cache file attributes,
so a change may be noticed only after their cache time (``actimeo`` on NFS).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..bounded_read import FileRefused, open_regular_file
from ..database.side_tables import RETRACTIONS_TABLE
from ..errors import InvalidRecordError, UnsafeCachePathError
from ..records import is_cal_id, validate_column_name
from ..sqlite_wal import connect_readonly
from .check import CachedFiles, lstat_or_none
from .layout import CacheLayout, create_private_file

logger = logging.getLogger(__name__)

__all__ = ["ReadOnlyCache", "ReadOnlyCaches"]

#: Records read from a read-only database per query.
_BATCH = 2000
#: Attempts at a copy of a database whose files stayed unchanged while it was made.
_COPY_ATTEMPTS = 5


class ReadOnlyCache:
    """One read-only calibration cache: its database (read only) and its files.

    Parameters
    ----------
    root : str | Path
        The cache's root folder (as ``KOA_CALIBRATION_CACHE`` of the machine that fills it).
    instrument : str
        The instrument name.
    db_filename : str
        The database file name in ``root/database``.
    table_name : str
        The table of records.

    Examples
    --------
    >>> cache = ReadOnlyCache("/shared/koa_cache", "hispec", "hispec_calibrations.db", "hispec")
    >>> cache.db_path.as_posix()
    '/shared/koa_cache/database/hispec_calibrations.db'
    """

    def __init__(self, root: str | Path, instrument: str, db_filename: str, table_name: str):
        self.layout = CacheLayout(root, instrument)
        self.db_path = self.layout.database_dir / db_filename
        self.table_name = validate_column_name(table_name)
        self._stamp: tuple | None = None
        #: id -> stat of files found not to match their record (not checked again).
        self._bad: dict[str, tuple] = {}

    def __repr__(self) -> str:
        return f"ReadOnlyCache(root={str(self.layout.root)!r})"

    def stamp(self) -> tuple:
        """What identifies the database's present state: device, inode, size, times of its files."""
        parts = []
        for suffix in ("", "-wal"):
            info = lstat_or_none(f"{self.db_path}{suffix}")
            parts.append(
                None
                if info is None
                else (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            )
        return tuple(parts)

    @property
    def read_once(self) -> bool:
        """Whether this process read (or marked read) the database already."""
        return self._stamp is not None

    @property
    def read_stamp(self) -> tuple | None:
        """The :meth:`stamp` of the database as last read, or None."""
        return self._stamp

    def mark_read(self) -> None:
        """Take the database's present state as read (it is read again when it changes)."""
        self._stamp = self.stamp()

    def changed(self) -> bool:
        """Whether the database's files changed since the last :meth:`records_after` (cheap)."""
        return self.stamp() != self._stamp

    def records_after(self, rowid: int, scratch: Path) -> tuple[list[dict], int]:
        """The records whose ``rowid`` is above ``rowid``, and the highest ``rowid`` seen.

        Parameters
        ----------
        rowid : int
            The highest ``rowid`` read before (0 for all records).
        scratch : Path
            A writable folder for a copy of the database, when it cannot be read in place.

        Returns
        -------
        tuple[list[dict], int]
            The records, in ``rowid`` order, and the highest ``rowid`` (``rowid``
            itself when there are none).

        Raises
        ------
        sqlite3.Error
            If the database cannot be read, in place or as a copy.
        OSError
            If the database cannot be copied.
        """
        stamp = self.stamp()
        if stamp[0] is None:
            self._stamp = stamp
            return [], rowid
        try:
            result = self._read(connect_readonly(self.db_path), rowid)
        except sqlite3.OperationalError as exc:
            # WAL mode without a -shm file that this process may create
            if os.access(self.db_path.parent, os.W_OK) or os.path.lexists(f"{self.db_path}-shm"):
                raise
            logger.debug("Reading a copy of %s, which cannot be read in place: %s", self, exc)
            result = self._read_copy(rowid, scratch)
        self._stamp = stamp
        return result

    def _read(self, conn: sqlite3.Connection, rowid: int) -> tuple[list[dict], int]:
        try:
            table = '"' + self.table_name + '"'
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table_name,)
            ).fetchone()
            if not exists:
                return [], rowid
            # the table name passed validate_column_name
            sql = f"SELECT rowid AS _koa_rowid, * FROM {table} WHERE rowid > ? ORDER BY rowid"  # noqa: S608
            cursor = conn.execute(sql, (rowid,))
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor]
        finally:
            conn.close()
        last = rowid
        for row in rows:
            last = row.pop("_koa_rowid")
        return rows, last

    def retractions(self, scratch: Path) -> dict[str, tuple[str, str]]:
        """Every retraction this cache knows: id -> ``(retracted_at, reason)``.

        Raises
        ------
        sqlite3.Error, OSError
            As :meth:`records_after`.
        """
        try:
            conn = connect_readonly(self.db_path)
            try:
                return _read_retractions(conn)
            finally:
                conn.close()
        except sqlite3.OperationalError:
            if os.access(self.db_path.parent, os.W_OK) or os.path.lexists(f"{self.db_path}-shm"):
                raise
            return self._with_copy(scratch, _read_retractions)

    def _read_copy(self, rowid: int, scratch: Path) -> tuple[list[dict], int]:
        """Read a copy of the database (and its ``-wal``) made while neither changed."""
        return self._with_copy(scratch, lambda conn: self._read(conn, rowid))

    def _with_copy(self, scratch: Path, read: Any) -> Any:
        """``read(conn)`` on a copy of the database made while its files did not change."""
        copy = scratch / f"{uuid.uuid4().hex}.snapshot"
        try:
            for _ in range(_COPY_ATTEMPTS):
                before = self.stamp()
                for suffix in ("", "-wal"):
                    _copy_file(Path(f"{self.db_path}{suffix}"), Path(f"{copy}{suffix}"))
                if self.stamp() == before and not os.path.lexists(f"{self.db_path}-shm"):
                    conn = sqlite3.connect(str(copy), isolation_level=None)
                    try:
                        return read(conn)
                    finally:
                        conn.close()
            raise sqlite3.OperationalError(
                f"{self.db_path} kept changing while it was copied; it is read again at "
                "the next lookup."
            )
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{copy}{suffix}")

    def file_for(self, record: Mapping[str, Any], cached_files: CachedFiles) -> Path | None:
        """The record's file in this cache when it is there and matches the record, else None.

        Parameters
        ----------
        record : Mapping
            The calibration's record.
        cached_files : CachedFiles
            The checker of this cache's files (size, MD5, stats seen before), which
            keeps what it saw in memory: the store did not place these files.

        Returns
        -------
        Path | None
            The file's path in this read-only cache.
        """
        path = self.layout.path_for(record["filename"])
        info = lstat_or_none(path)
        if info is None:
            return None
        seen = (path.name, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
        if self._bad.get(record["id"]) == seen:
            return None  # found wrong before, and unchanged since
        problem = cached_files.problem(record, path, info)
        if problem is not None:
            if len(self._bad) >= 4096:
                self._bad.clear()
            self._bad[record["id"]] = seen
            logger.warning(
                "The file %s of the read-only cache %s %s; using the writable cache instead.",
                path,
                self.layout.root,
                problem,
            )
            return None
        return path


class ReadOnlyCaches:
    """The read-only caches of a store, searched in order before its own cache.

    Parameters
    ----------
    roots : sequence of str
        The read-only caches' root folders (``StoreConfig.readonly_caches``).
    instrument, db_filename, table_name : str
        As for the store's own cache.
    own : CacheLayout | None
        The store's writable cache (copies of databases are read in its ``tmp``
        folder); None when the store has no cache of its own (nothing is created).

    Examples
    --------
    >>> caches = ReadOnlyCaches([], "hispec", "hispec_calibrations.db", "hispec", None)
    >>> bool(caches)
    False
    """

    def __init__(
        self,
        roots: Any,
        instrument: str,
        db_filename: str,
        table_name: str,
        own: CacheLayout | None,
    ):
        self.caches = [ReadOnlyCache(root, instrument, db_filename, table_name) for root in roots]
        self.own = own
        #: The stats of the read-only caches' files checked so far (in memory only).
        self.checked = CachedFiles(None)

    @classmethod
    def from_config(cls, config: Any, own: CacheLayout | None) -> ReadOnlyCaches:
        """The read-only caches a :class:`~koa_middleware.config.StoreConfig` names."""
        return cls(
            config.readonly_caches,
            config.instrument_name,
            config.local_database_filename,
            config.table_name,
            own,
        )

    def __bool__(self) -> bool:
        return bool(self.caches)

    def refresh(self, local_db: Any) -> int:
        """Copy into ``local_db`` the records of the read-only caches it lacks (by id).

        Only caches whose database changed since the last call are read; a
        cache that cannot be read is logged and tried again when its database
        changes.

        Parameters
        ----------
        local_db : LocalCalibrationDB
            The writable cache's database.

        Returns
        -------
        int
            How many records were added.
        """
        added = 0
        for cache in self.caches:
            if not cache.changed() or self._read_by_an_earlier_store(cache, local_db):
                continue
            try:
                added += self._refresh_one(cache, local_db)
            except (OSError, sqlite3.Error) as exc:
                cache.mark_read()  # tried again when its database changes
                logger.warning(
                    "Could not read the records of the read-only cache %s (%s: %s); working "
                    "without its new records until its database changes. Check that the "
                    "folder is readable and holds a calibration cache.",
                    cache.layout.root,
                    type(exc).__name__,
                    exc,
                )
        return added

    def _read_by_an_earlier_store(self, cache: ReadOnlyCache, local_db: Any) -> bool:
        """Whether ``local_db`` already holds all of ``cache`` as its database is now.

        The state of a read-only database (:meth:`ReadOnlyCache.stamp`) is kept in
        ``local_db`` after each complete read; a store opened later finds it
        unchanged and reads nothing (one ``lstat`` per file instead of reading
        every retraction and the new records).
        """
        if cache.read_once:
            return False
        saved = local_db.get_meta(_stamp_key(cache))
        if saved is None or saved != _content_stamp(cache.stamp()):
            return False
        cache.mark_read()
        return True

    def _refresh_one(self, cache: ReadOnlyCache, local_db: Any) -> int:
        key = f"readonly:{cache.db_path}"
        saved = (local_db.get_meta(key) or "").split(":")
        stamp = cache.stamp()[0]
        inode = "" if stamp is None else f"{stamp[0]}.{stamp[1]}"
        after = int(saved[1]) if len(saved) == 2 and saved[0] == inode else 0
        with self._scratch() as scratch:
            rows, last = cache.records_after(after, scratch)
            if last < after:  # the table was emptied and filled again
                rows, last = cache.records_after(0, scratch)
            retractions = cache.retractions(scratch)
        added = 0
        for start in range(0, len(rows), _BATCH):
            added += _add_missing(local_db, rows[start : start + _BATCH], cache)
        _add_retractions(local_db, retractions)
        if last != after or saved[0] != inode:
            local_db.set_meta(key, f"{inode}:{last}")
        # taken before reading: a change made meanwhile is read by the next store
        stamp = _content_stamp(cache.read_stamp)
        if local_db.get_meta(_stamp_key(cache)) != stamp:
            local_db.set_meta(_stamp_key(cache), stamp)
        if added:
            logger.info("Added %d records of the read-only cache %s.", added, cache.layout.root)
        return added

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[Path]:
        """A writable folder for copies of databases: the own cache's ``tmp``, else a new one.

        A store that opened no cache of its own (a read command) creates nothing in it.
        """
        if self.own is not None:
            self.own.create()
            yield self.own.tmp_dir
            return
        with tempfile.TemporaryDirectory(prefix="koa_readonly_") as folder:
            yield Path(folder)

    def file_for(self, record: Mapping[str, Any]) -> Path | None:
        """The record's file in the first read-only cache that holds it intact, or None.

        Examples
        --------
        >>> store.readonly_caches.file_for(record)  # doctest: +SKIP
        PosixPath('/shared/koa_cache/calibrations/hispec/dark_001.fits')
        """
        for cache in self.caches:
            path = cache.file_for(record, self.checked)
            if path is not None:
                return path
        return None


def _stamp_key(cache: ReadOnlyCache) -> str:
    """The setting of the local database that keeps the state of ``cache``'s database read."""
    return f"readonly-stamp:{cache.db_path}"


def _content_stamp(stamp: tuple | None) -> str:
    """A :meth:`ReadOnlyCache.stamp` without the change times of the files, as text.

    Opening a database read-only may create its ``-wal`` file empty, or change
    its change time, without changing what the database holds; a write changes
    the modification time (and mostly the size), and a file put in place of
    another changes the inode. An empty ``-wal`` holds nothing, as a missing one.
    """
    if stamp is None:
        return repr(None)
    database, wal = stamp
    return repr(
        (
            None if database is None else database[:4],
            None if wal is None or wal[2] == 0 else wal[:4],
        )
    )


def _add_missing(local_db: Any, rows: list[dict], cache: ReadOnlyCache) -> int:
    """Add the rows whose id ``local_db`` lacks; set aside (with a warning) those it refuses.

    The look and the additions are one write transaction, so a record another
    process writes meanwhile is never overwritten.
    """
    with local_db.write_transaction():
        return _add_absent(local_db, rows, cache)


def _add_absent(local_db: Any, rows: list[dict], cache: ReadOnlyCache) -> int:
    present = local_db.ids_present([row.get("id") for row in rows if row.get("id")])
    missing = [_without_nulls(row) for row in rows if row.get("id") not in present]
    if not missing:
        return 0
    try:
        local_db.add(missing)
        return len(missing)
    except InvalidRecordError:
        pass
    added = 0
    for row in missing:
        try:
            local_db.add(row)
            added += 1
        except InvalidRecordError as exc:
            logger.warning(
                "Set aside record %s of the read-only cache %s: %s",
                row.get("id"),
                cache.layout.root,
                exc,
            )
    return added


def _read_retractions(conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (RETRACTIONS_TABLE,)
    ).fetchone()
    if not exists:
        return {}
    rows = conn.execute(f'SELECT id, retracted_at, reason FROM "{RETRACTIONS_TABLE}"')  # noqa: S608 - a constant
    return {row[0]: (row[1], row[2]) for row in rows if is_cal_id(row[0])}


def _add_retractions(local_db: Any, retractions: Mapping[str, tuple[str, str]]) -> None:
    """Record the retractions a read-only cache knows and ``local_db`` lacks.

    A retraction known to any source is honoured: they are only ever added here
    (an undone retraction reaches this cache from the archive). They are marked
    as known to the archive, so a push never sends another cache's retractions.
    """
    known = local_db.retractions()
    new = {cal_id: value for cal_id, value in retractions.items() if cal_id not in known}
    if new:
        local_db.set_retractions(new, pushed=True)
        logger.info("Added %d retraction(s) of a read-only cache.", len(new))


def _without_nulls(row: dict) -> dict:
    """The record without empty columns (a column only some records have)."""
    return {key: value for key, value in row.items() if value is not None}


def _copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` (if it exists) to the new private file ``target``.

    Only a regular file is copied, opened without following a link and
    without waiting on a FIFO, and no more bytes than it had when opened: a
    link to ``/dev/zero`` would otherwise fill the disk, and a FIFO hang.

    Raises
    ------
    UnsafeCachePathError
        If ``source`` is a link or not a regular file, or grew while it was
        copied.
    """
    try:
        fd, info = open_regular_file(source)
    except FileNotFoundError:
        return
    except FileRefused as exc:
        raise UnsafeCachePathError(
            f"The read-only cache's database file {source} {exc.problem}; it is not read."
        ) from None
    with os.fdopen(fd, "rb") as reader, open(create_private_file(target), "wb") as writer:
        remaining = info.st_size
        while remaining > 0:
            chunk = reader.read(min(remaining, 1 << 20))
            if not chunk:
                break  # it shrank: the copy is checked against the stamp afterwards
            writer.write(chunk)
            remaining -= len(chunk)
        if reader.read(1):
            raise UnsafeCachePathError(
                f"The read-only cache's database file {source} grew past the "
                f"{info.st_size:,} bytes it had when opened while it was copied; it is read "
                "again when it changes."
            )

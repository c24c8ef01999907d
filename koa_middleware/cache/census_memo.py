"""A cache's census kept between runs, for as long as nothing it counted has changed.

Listing a folder of a million files and reading a million file names takes
about a second whatever is done with them; a status asked again of a cache
that did not change need not pay it. So :func:`~.census.take_census` keeps
what it counted in a file beside the cache's database
(``database/<database file>.census``), under a key made of

- the database file's device, inode, size and times, and those of its
  write-ahead log with the log's header while the log holds anything: any
  write to the database, by any SQLite client, changes one of them (a commit
  grows the log or rewrites its header; a checkpoint writes the file);
- each counted folder's device, inode and times, which change whenever a name
  in the folder is added, removed or renamed.

The key is read before anything is counted, so a change made while counting
makes the kept count stale, never wrong. Files' times have the coarse grain
of the kernel's clock: a change within the same tick as the one before could
leave them as they were. So a count is kept only when the database, its log
and every folder were last changed :data:`SETTLED_NS` or more before they
were looked at (as git does with its index). Files no record names, and files
whose record gives no size, are measured again each time; what changes inside
a file without a new name (a file truncated by hand) is what ``koa-cal
verify`` finds.

A count naming more than :data:`MEMO_NAMES` files is not kept: its reading
would cost what it spares. A kept count that is not as written here (another
program's, or damaged, or not a file) is ignored and counted again. It is
written in the cache's temporary folder and renamed beside the database, so
it is read whole or not at all. Nothing is kept where those folders cannot be
written (a cache opened by another account); the count is then taken each
time.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..records import is_filename
from .permissions import FILE_MODE, match_folder_group

if TYPE_CHECKING:
    from ..database.local_database import LocalCalibrationDB
    from .layout import CacheLayout

logger = logging.getLogger(__name__)

__all__ = ["MEMO_BYTES", "MEMO_NAMES", "SETTLED_NS", "CensusMemo", "KeptCount"]

#: What was changed less than this long (ns) before it was looked at is counted again next time.
SETTLED_NS = 2_000_000_000
#: A count naming more files than this (missing or measured on disk) is not kept.
MEMO_NAMES = 10_000
#: A kept count larger than this (bytes) is not read.
MEMO_BYTES = 4 * 1024 * 1024
#: The bytes of SQLite's write-ahead log header: its salts change when the log restarts.
_WAL_HEADER = 32
_OPEN_FLAGS = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


class KeptCount(NamedTuple):
    """What a census counted, as it is kept between runs.

    Attributes
    ----------
    missing : list[str]
        The file names of the records with no file, sorted.
    recorded_bytes : int
        The bytes of the own folder's files that their records give.
    measured : list[str]
        The names in the own folder measured on disk each time (no record, or a
        record without a size).
    """

    missing: list[str]
    recorded_bytes: int
    measured: list[str]


class CensusMemo:
    """Where a cache's census is kept: a file beside its database.

    Parameters
    ----------
    layout : CacheLayout
        The cache's folders (the memo is read and written through the
        descriptor of its database folder, never through a link).
    database : str
        The database's file name in that folder.

    Examples
    --------
    >>> memo = CensusMemo.beside(store.local_db, store.layout)  # doctest: +SKIP
    >>> memo.read(memo.key([store.layout.calibrations_dir]))  # doctest: +SKIP
    KeptCount(missing=[], recorded_bytes=1048576, measured=[])
    """

    def __init__(self, layout: CacheLayout, database: str):
        self.layout = layout
        self.database = database
        self.name = f"{database}.census"

    def __repr__(self) -> str:
        return f"CensusMemo({str(self.layout.database_dir / self.name)!r})"

    @classmethod
    def beside(cls, db: LocalCalibrationDB, layout: CacheLayout) -> CensusMemo | None:
        """The memo of ``db``, or None when it is not a file in the cache's database folder."""
        path = Path(db.db_path)
        if db.memory_uri is not None or path.parent != layout.database_dir:
            return None
        return cls(layout, path.name)

    def key(self, folders: Sequence[Path]) -> list:
        """What a count of ``folders`` and the database stands for (read before counting)."""
        return [self._database_times(), *([str(f), _times(os.stat, f)] for f in folders)]

    def read(self, key: list) -> KeptCount | None:
        """The count kept under ``key``, or None when there is none or it is not usable."""
        try:
            text = self._read_file()
        except (OSError, ValueError) as exc:
            logger.debug("No kept census to read: %s", exc)
            return None
        try:
            memo = json.loads(text)
            if memo["key"] != key:
                return None
            count = KeptCount(memo["missing"], memo["recorded_bytes"], memo["measured"])
        except (ValueError, TypeError, KeyError) as exc:
            logger.debug("A kept census that cannot be read is counted again: %s", exc)
            return None
        if not _well_formed(count):
            logger.debug("A kept census that is not as written here is counted again.")
            return None
        return count

    def keep(self, key: list, count: KeptCount, looked_ns: int) -> bool:
        """Keep ``count`` under ``key`` when it may be trusted next time; say whether it was.

        Parameters
        ----------
        key : list
            :meth:`key`, read before counting.
        count : KeptCount
            What was counted.
        looked_ns : int
            ``time.time_ns()`` just before ``key`` was read.
        """
        if not _settled(key, looked_ns) or len(count.missing) + len(count.measured) > MEMO_NAMES:
            return False
        text = json.dumps({"key": key, **count._asdict()}, separators=(",", ":"))
        try:
            self._write_file(text.encode())
        except OSError as exc:  # a folder this account may not write: counted each time
            logger.debug("The census is not kept: %s", exc)
            return False
        return True

    def _database_times(self) -> list:
        """The database file's identity and times, and its log's while it holds anything."""
        with self.layout.opened_folder(self.layout.database_dir) as folder:
            database = _times(lambda name: os.stat(name, dir_fd=folder), self.database)
            try:
                flags = os.O_RDONLY | os.O_NONBLOCK | _OPEN_FLAGS
                fd = os.open(f"{self.database}-wal", flags, dir_fd=folder)
            except FileNotFoundError:
                return [database, None]
        try:
            log = _times(os.fstat, fd)
            if log is None or log[2] == 0:  # an empty log: the file holds everything
                return [database, None]
            return [database, [*log, os.pread(fd, _WAL_HEADER, 0).hex()]]
        finally:
            os.close(fd)

    def _read_file(self) -> str:
        # O_NONBLOCK (here and for the log): a pipe planted at the name is never waited on.
        flags = os.O_RDONLY | os.O_NONBLOCK | _OPEN_FLAGS
        with self.layout.opened_folder(self.layout.database_dir) as folder:
            fd = os.open(self.name, flags, dir_fd=folder)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MEMO_BYTES:
                raise ValueError(f"{self.name} is not a kept census")
            return handle.read(MEMO_BYTES + 1).decode()

    def _write_file(self, data: bytes) -> None:
        """Write a new file in the temporary folder and rename it beside the database.

        A file left by a process killed in between is a leftover of the
        temporary folder, which the next store to start removes.
        """
        partial = self.layout.temp_path(".census").name
        with (
            self.layout.opened_folder(self.layout.tmp_dir) as tmp,
            self.layout.opened_folder(self.layout.database_dir) as folder,
        ):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS
            fd = os.open(partial, flags, FILE_MODE, dir_fd=tmp)
            with os.fdopen(fd, "wb") as handle:
                match_folder_group(handle.fileno(), folder)
                handle.write(data)
            try:
                os.replace(partial, self.name, src_dir_fd=tmp, dst_dir_fd=folder)
            except OSError:
                os.unlink(partial, dir_fd=tmp)
                raise


def _times(stat_of, what) -> list[int] | None:
    """``[device, inode, size, mtime_ns, ctime_ns]`` of a file or folder, None if there is none."""
    try:
        info = stat_of(what)
    except FileNotFoundError:
        return None
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def _settled(key: list, looked_ns: int) -> bool:
    """Whether everything in ``key`` was last changed :data:`SETTLED_NS` before ``looked_ns``."""
    (database, log), *folders = key
    times = [database, log, *(folder_times for _, folder_times in folders)]
    return all(t is None or t[3] <= looked_ns - SETTLED_NS for t in times)


def _well_formed(count: KeptCount) -> bool:
    """Whether a kept count holds what :meth:`CensusMemo.keep` writes: plain names, a size."""
    names_ok = all(
        isinstance(names, list) and all(map(is_filename, names))
        for names in (count.missing, count.measured)
    )
    size = count.recorded_bytes
    return names_ok and isinstance(size, int) and not isinstance(size, bool) and size >= 0

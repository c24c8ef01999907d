"""Is a cached file still the one its record describes? Checked cheaply, by its stat.

When a file is placed in the cache (a download, a registration, a repair), the
store records its size, modification and change times (ns) and inode. A later
look that finds the same stat serves the file at once; any other stat (someone
rewrote, replaced or touched the file) has its size and MD5 checked against
the record first. A file that passes has its new stat recorded, so the next
look is fast again. ``koa-cal verify`` remains the full check of every file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..hashing import file_md5

logger = logging.getLogger(__name__)

__all__ = ["CachedFiles", "lstat_or_none"]

#: Stats of checked files are written to the database this many at a time.
STAT_BATCH = 64
#: At most this many stats of intact files are kept in memory.
KNOWN_STATS = 65536
#: Uses of files are written this many at a time, or after this many seconds.
USE_BATCH, USE_INTERVAL = 256, 60.0


def lstat_or_none(path: str | os.PathLike) -> os.stat_result | None:
    """The ``lstat`` of ``path`` (a link is not followed), or None when nothing is there."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


class CachedFiles:
    """The stats of one store's cached files: what it recorded, and what it checked since.

    Parameters
    ----------
    local_db : LocalCalibrationDB | None
        Where the stats are kept (``get_file_stat`` / ``set_file_stat(s)``);
        None keeps them in memory only (files of a read-only cache, which the
        store did not place).
    """

    def __init__(self, local_db: Any):
        self.local_db = local_db
        #: Stats of files checked in full and not yet written to the database.
        self._unsaved: dict[str, tuple] = {}
        #: Stats seen to match the record (a file whose stat is one of these is intact).
        self._known: dict[str, tuple] = {}
        #: When files were served since the last write (id -> Unix time).
        self._uses: dict[str, float] = {}
        self._uses_written = time.monotonic()

    def note_use(self, cal_id: str) -> None:
        """Remember that ``cal_id``'s file was served now (written in batches).

        The times decide which files ``koa-cal prune`` removes first.
        """
        self._uses[cal_id] = time.time()
        if len(self._uses) >= USE_BATCH or time.monotonic() - self._uses_written > USE_INTERVAL:
            self.save()

    def problem(self, record: Mapping[str, Any], path: Path, info: os.stat_result) -> str | None:
        """What is wrong with the record's cached file, or None when it may be served.

        Parameters
        ----------
        record : Mapping
            The calibration's record (``id``, ``file_md5``, ``file_size``).
        path : Path
            Its file in the cache.
        info : os.stat_result
            The ``lstat`` of ``path``.

        Returns
        -------
        str | None
            A phrase that completes "The cached file PATH ..." , or None.
        """
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file (a link or folder was put in its place)"
        expected = record.get("file_size")
        if expected is not None and info.st_size != int(expected):
            return f"has {info.st_size} bytes but its record says {expected}"
        md5 = str(record.get("file_md5") or "").lower() or None
        cal_id = record["id"]
        seen = (path.name, md5, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
        if self._known.get(cal_id) == seen:
            return None  # checked by this store, and unchanged since
        if self.local_db is not None and self.local_db.get_file_stat(cal_id) == seen:
            self._know(cal_id, seen)
            return None
        if md5 is not None:
            actual = file_md5(path)
            if actual != md5:
                return (
                    f"has MD5 {actual} but its record says {md5} (it changed after it was placed)"
                )
        # Written in batches: a first look at many files costs one transaction per batch.
        self._know(cal_id, seen)
        if self.local_db is None:
            return None
        self._unsaved[cal_id] = seen
        if len(self._unsaved) >= STAT_BATCH:
            self.save()
        return None

    def remember(self, record: Mapping[str, Any], path: Path) -> None:
        """Record the stat of a file just placed and verified."""
        try:
            info = os.lstat(path)
            self.local_db.set_file_stat(record["id"], path.name, record.get("file_md5"), info)
        except (OSError, sqlite3.Error) as exc:
            # A read-only cache: the file is checked in full each time instead.
            logger.debug("Could not record the stat of %s: %s", path, exc)

    def save(self) -> None:
        """Write the stats and uses noted since the last batch (also when the store closes)."""
        unsaved, self._unsaved = self._unsaved, {}
        uses, self._uses = self._uses, {}
        self._uses_written = time.monotonic()
        if self.local_db is None:
            return
        try:
            if unsaved:
                self.local_db.set_file_stats(unsaved)
            if uses:
                self.local_db.note_uses(uses)
        except sqlite3.Error as exc:  # a read-only cache: nothing is remembered
            logger.debug("Could not record what was seen of %d cached files: %s", len(unsaved), exc)

    def _know(self, cal_id: str, seen: tuple) -> None:
        if len(self._known) >= KNOWN_STATS:
            self._known.clear()
        self._known[cal_id] = seen

"""The small tables beside the records in the local database: settings, file stats, lifecycle.

``_koa_meta`` holds key/value settings of the database (such as sync cursors);
``_koa_files`` holds what the store saw of each cached file when it placed or
last checked it (see :mod:`koa_middleware.cache.check`); ``_koa_retractions``
the calibrations withdrawn (when, why, and whether the archive knows);
``_koa_published`` when the archive first published each record. Keeping these
beside the records leaves the records' shape exactly as pipelines know it. A
mixin of
:class:`~koa_middleware.database.local_database.LocalCalibrationDB`, which
creates the tables.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "FILES_TABLE",
    "META_TABLE",
    "PUBLISHED_TABLE",
    "RETRACTIONS_TABLE",
    "USES_TABLE",
    "SideTables",
]

# The names are written out in the SQL below too.
META_TABLE = "_koa_meta"
#: What the store saw of each cached file when it placed or last checked it.
FILES_TABLE = "_koa_files"
#: Calibrations withdrawn: id, retracted_at, reason, pushed (the archive knows).
RETRACTIONS_TABLE = "_koa_retractions"
#: When the archive first published each record (for selection as of a date).
PUBLISHED_TABLE = "_koa_published"
#: When each cached file was last served (Unix time), for keeping the cache in bounds.
USES_TABLE = "_koa_uses"


class SideTables:
    """Settings and file stats (needs ``conn``, ``_lock`` and ``write_transaction``)."""

    # -- small key/value store (sync cursors) --------------------------------

    def get_meta(self, key: str) -> str | None:
        """Return a stored setting of this database (such as a sync cursor), or None."""
        row = self.conn.execute('SELECT value FROM "_koa_meta" WHERE key = ?', (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        """Store (or with None, remove) a setting of this database."""
        with self.write_transaction():
            if value is None:
                self.conn.execute('DELETE FROM "_koa_meta" WHERE key = ?', (key,))
            else:
                self.conn.execute(
                    'INSERT INTO "_koa_meta" (key, value) VALUES (?, ?) '
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, str(value)),
                )

    # -- what the store saw of its cached files ------------------------------

    def get_file_stat(self, cal_id: str) -> tuple | None:
        """What was recorded of calibration ``cal_id``'s cached file, or None.

        Returns
        -------
        tuple | None
            ``(filename, file_md5, size, mtime_ns, ctime_ns, inode)`` as given to
            :meth:`set_file_stat`.
        """
        with self._lock:
            return self.conn.execute(
                'SELECT filename, file_md5, size, mtime_ns, ctime_ns, inode FROM "_koa_files" '
                "WHERE id = ?",
                (cal_id,),
            ).fetchone()

    def set_file_stat(
        self, cal_id: str, filename: str, file_md5: str | None, info: os.stat_result
    ) -> None:
        """Record the size, modification and change times (ns) and inode of a verified file.

        Called when a file is placed in the cache (download or registration; in
        the record's transaction when there is one) and after its MD5 was
        checked, so a later lookup that finds the same stat need not hash it. The
        change time cannot be set back, so a file rewritten with its old
        modification time still differs.

        Examples
        --------
        >>> import os
        >>> from koa_middleware import LocalCalibrationDB
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> cal_id = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"
        >>> db.set_file_stat(cal_id, "d.fits", None, os.stat("."))
        >>> db.get_file_stat(cal_id)[0]
        'd.fits'
        """
        md5 = str(file_md5).lower() if file_md5 else None
        stat = (filename, md5, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
        self.set_file_stats({cal_id: stat})

    def set_file_stats(self, stats: Mapping[str, tuple]) -> None:
        """Record many file stats in one transaction (id -> what :meth:`get_file_stat` returns)."""
        with self.write_transaction():
            self.conn.executemany(
                'INSERT INTO "_koa_files" '
                "(id, filename, file_md5, size, mtime_ns, ctime_ns, inode) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "filename = excluded.filename, file_md5 = excluded.file_md5, "
                "size = excluded.size, mtime_ns = excluded.mtime_ns, "
                "ctime_ns = excluded.ctime_ns, inode = excluded.inode",
                [(cal_id, *stat) for cal_id, stat in stats.items()],
            )

    # -- retractions and publication times ------------------------------------

    def set_retractions(self, retractions: Mapping[str, tuple[str, str]], pushed: bool) -> None:
        """Record retractions: id -> ``(retracted_at, reason)``.

        ``pushed`` says whether the archive knows of them (they came from it, or
        were sent to it).

        Examples
        --------
        >>> from koa_middleware import LocalCalibrationDB
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> cal_id = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"
        >>> db.set_retractions({cal_id: ("2026-01-01T00:00:00.000", "bad pixels")}, False)
        >>> db.retraction(cal_id)["reason"]
        'bad pixels'
        """
        with self.write_transaction():
            self.conn.executemany(
                'INSERT INTO "_koa_retractions" (id, retracted_at, reason, pushed) '
                "VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "retracted_at = excluded.retracted_at, reason = excluded.reason, "
                "pushed = excluded.pushed",
                [(cal_id, at, reason, int(pushed)) for cal_id, (at, reason) in retractions.items()],
            )

    def clear_retractions(self, ids: Iterable[str]) -> None:
        """Forget the retraction of each id (it is live again)."""
        with self.write_transaction():
            self.conn.executemany(
                'DELETE FROM "_koa_retractions" WHERE id = ?', [(cal_id,) for cal_id in ids]
            )

    def retraction(self, cal_id: str) -> dict | None:
        """``{"retracted_at", "reason", "pushed"}`` of a retracted calibration, else None."""
        with self._lock:
            row = self.conn.execute(
                'SELECT retracted_at, reason, pushed FROM "_koa_retractions" WHERE id = ?',
                (cal_id,),
            ).fetchone()
        if row is None:
            return None
        return {"retracted_at": row[0], "reason": row[1], "pushed": bool(row[2])}

    def retractions(self, pushed: bool | None = None) -> dict[str, dict]:
        """Every retraction (or those the archive does or does not know), by id."""
        sql = 'SELECT id, retracted_at, reason, pushed FROM "_koa_retractions"'
        params: tuple = ()
        if pushed is not None:
            sql, params = sql + " WHERE pushed = ?", (int(pushed),)
        with self._lock:
            rows = self.conn.execute(sql, params).fetchall()
        return {r[0]: {"retracted_at": r[1], "reason": r[2], "pushed": bool(r[3])} for r in rows}

    def count_publications(self) -> int:
        """Return how many publication times are kept (one per record the archive published).

        Cheap; :meth:`~koa_middleware.database.local_database.LocalCalibrationDB.count_published`
        counts only those whose record is here.
        """
        with self._lock:
            return self.conn.execute('SELECT COUNT(*) FROM "_koa_published"').fetchone()[0]

    def set_published(self, times: Mapping[str, str]) -> None:
        """Record when the archive first published each record (id -> UTC time)."""
        with self.write_transaction():
            self.conn.executemany(
                'INSERT INTO "_koa_published" (id, published_at) VALUES (?, ?) '
                "ON CONFLICT(id) DO NOTHING",
                # In id order: the inserts walk the table's index once instead of
                # jumping about it (an eighth faster at a million records).
                sorted(times.items()),
            )

    # -- when cached files were last used ------------------------------------------

    def note_uses(self, uses: Mapping[str, float]) -> None:
        """Record when files were last served (id -> Unix time); a later time wins."""
        with self.write_transaction():
            self.conn.executemany(
                'INSERT INTO "_koa_uses" (id, last_used) VALUES (?, ?) ON CONFLICT(id) DO '
                "UPDATE SET last_used = MAX(last_used, excluded.last_used)",
                list(uses.items()),
            )

    def last_uses(self) -> dict[str, float]:
        """When each file was last served (id -> Unix time), for files served at all."""
        with self._lock:
            return dict(self.conn.execute('SELECT id, last_used FROM "_koa_uses"').fetchall())

    def apply_lifecycle(self, lifecycle: Mapping[str, Mapping[str, Any]]) -> None:
        """Keep what the archive says of records' lives: id -> :func:`split_lifecycle` info.

        A ``retracted_at`` retracts the calibration (the archive knows); a
        ``retracted_at`` of None makes live again a calibration the archive had
        retracted (a retraction made here and not yet sent stays).
        """
        published = {i: v["published_at"] for i, v in lifecycle.items() if v.get("published_at")}
        retracted = {
            cal_id: (info["retracted_at"], info.get("retract_reason") or "no reason given")
            for cal_id, info in lifecycle.items()
            if info.get("retracted_at")
        }
        live = [i for i, v in lifecycle.items() if "retracted_at" in v and not v["retracted_at"]]
        with self.write_transaction():
            if published:
                self.set_published(published)
            if retracted:
                self.set_retractions(retracted, pushed=True)
            if live:
                self.conn.executemany(
                    'DELETE FROM "_koa_retractions" WHERE id = ? AND pushed = 1',
                    [(cal_id,) for cal_id in live],
                )

    def forget(self, cal_id: str) -> None:
        """Drop everything kept beside a record (stats, uses, retraction, publication)."""
        with self.write_transaction():
            for table in (FILES_TABLE, USES_TABLE, RETRACTIONS_TABLE, PUBLISHED_TABLE):
                self.conn.execute(f'DELETE FROM "{table}" WHERE id = ?', (cal_id,))

    def forget_file_stat(self, cal_id: str) -> None:
        """Drop the recorded stat of a file removed on purpose (pruned), so it is not "lost"."""
        self.forget_file_stats([cal_id])

    def forget_file_stats(self, ids: Iterable[str]) -> None:
        """:meth:`forget_file_stat` of many files, in one transaction."""
        with self.write_transaction():
            self.conn.executemany(
                'DELETE FROM "_koa_files" WHERE id = ?', [(cal_id,) for cal_id in ids]
            )

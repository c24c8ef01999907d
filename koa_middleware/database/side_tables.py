"""The small tables beside the records in the local database: settings and file stats.

``_koa_meta`` holds key/value settings of the database (such as sync cursors);
``_koa_files`` holds what the store saw of each cached file when it placed or
last checked it (see :mod:`koa_middleware.cache.check`). A mixin of
:class:`~koa_middleware.database.local_database.LocalCalibrationDB`, which
creates the tables.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

logger = logging.getLogger(__name__)

__all__ = ["FILES_TABLE", "META_TABLE", "SideTables"]

# The names are written out in the SQL below too.
META_TABLE = "_koa_meta"
#: What the store saw of each cached file when it placed or last checked it.
FILES_TABLE = "_koa_files"


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

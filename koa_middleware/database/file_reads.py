"""Reads of the records' file names and sizes, cheap at a million records.

:mod:`koa_middleware.cache.census` counts with them what a cache holds
(``koa-cal status``) without reading a calibration file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .reading import quote_identifier

if TYPE_CHECKING:
    from .local_database import LocalCalibrationDB

__all__ = ["file_bytes", "file_names", "rows_of_files"]

#: File names per SQL statement when records are read by name.
_NAMES_PER_QUERY = 500


def file_names(db: LocalCalibrationDB) -> set[str]:
    """The file name of every record, read from the file-name index alone.

    Examples
    --------
    >>> from koa_middleware import LocalCalibrationDB
    >>> file_names(LocalCalibrationDB(":memory:", "hispec"))
    set()
    """
    # Joined in SQLite and split here: a third faster than a row per name. No file
    # name holds a "/" (validate_filename).
    sql = f"SELECT group_concat(filename, '/') FROM {quote_identifier(db.table_name)}"
    with db.lock:
        joined = db.conn.execute(sql).fetchone()[0]
    return set(joined.split("/")) if joined else set()


def file_bytes(
    db: LocalCalibrationDB, filenames: Iterable[str] | None = None
) -> tuple[int, list[str]]:
    """The bytes the records' files hold by their records, and the files of unknown size.

    Parameters
    ----------
    db : LocalCalibrationDB
        The database.
    filenames : iterable of str, optional
        Only the records of these file names (read by name); all when None
        (one pass, summed in SQL).

    Returns
    -------
    tuple[int, list[str]]
        The sum of ``file_size``, and the file names whose record gives none.

    Examples
    --------
    >>> from koa_middleware import LocalCalibrationDB
    >>> file_bytes(LocalCalibrationDB(":memory:", "hispec"))
    (0, [])
    """
    table = quote_identifier(db.table_name)
    if filenames is None:
        with db.lock:
            sql = f"SELECT SUM(file_size), COUNT(*) - COUNT(file_size) FROM {table}"
            total, unsized = db.conn.execute(sql).fetchone()
            if not unsized:
                return total or 0, []
            sql = f"SELECT filename FROM {table} WHERE file_size IS NULL"
            return total or 0, [name for (name,) in db.conn.execute(sql)]
    total, unknown = 0, []
    for chunk in _chunks(filenames):
        sql = (
            f"SELECT filename, file_size FROM {table} "
            f"WHERE filename IN ({', '.join('?' * len(chunk))})"
        )
        with db.lock:
            for name, size in db.conn.execute(sql, chunk):
                if size is None:
                    unknown.append(name)
                else:
                    total += size
    return total, unknown


def rows_of_files(db: LocalCalibrationDB, filenames: Iterable[str]) -> list[dict]:
    """The records of these file names, whole, in the order they were added.

    Examples
    --------
    >>> from koa_middleware import LocalCalibrationDB
    >>> rows_of_files(LocalCalibrationDB(":memory:", "hispec"), ["dark_001.fits"])
    []
    """
    found: list[tuple[int, dict]] = []
    for chunk in _chunks(filenames):
        where = f"filename IN ({', '.join('?' * len(chunk))})"
        for row in db.rows_where(where, chunk, select="rowid AS _rowid, *"):
            found.append((row.pop("_rowid"), row))
    return [row for _, row in sorted(found, key=lambda pair: pair[0])]


def _chunks(names: Iterable[str]) -> Iterable[list[str]]:
    names = list(names)
    for start in range(0, len(names), _NAMES_PER_QUERY):
        yield names[start : start + _NAMES_PER_QUERY]

"""A sqlite-utils Table that answers "nearest in time" queries from an index.

Selectors typically ask for the calibration closest to a frame::

    db.table.rows_where("cal_type = :t AND spectrograph = :s",
                        params, order_by="ABS(mjd_start - :mjd)", limit=1)

SQLite cannot use an index for ``ORDER BY ABS(...)``, so it would compute the
distance of every matching row. :class:`CalibrationTable` answers the same
question with two index seeks (the nearest rows below and above ``:mjd``) over
an index of the equality columns plus ``mjd_start``, which it creates on first
use. The answer is the same rows; any query it cannot prove equivalent goes
to SQLite unchanged.

Rows that tie on the ordering come in the order they were added (``rowid``),
whichever index SQLite picks: pipelines rely on it to choose between
calibrations at the same distance.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable, Generator, Iterable
from typing import Any

from sqlite_utils.db import Table

logger = logging.getLogger(__name__)

__all__ = ["CalibrationTable"]

_NEAREST_RE = re.compile(
    r"^\s*ABS\s*\(\s*(?:(?P<col>[A-Za-z_]\w*)\s*-\s*:(?P<param>[A-Za-z_]\w*)"
    r"|:(?P<param2>[A-Za-z_]\w*)\s*-\s*(?P<col2>[A-Za-z_]\w*))\s*\)\s*(?:ASC)?\s*$",
    re.IGNORECASE,
)
_PLAIN_ORDER_RE = re.compile(r"^\s*([A-Za-z_]\w*)(?:\s+(?:ASC|DESC))?\s*\Z", re.IGNORECASE)
_EQUALITY_RE = re.compile(
    r"\b([A-Za-z_]\w*)\s*=\s*(?::[A-Za-z_]\w*|\?|'[^']*'|-?\d+(?:\.\d+)?)(?!\w)"
)
_NUMERIC_TYPES = ("REAL", "INTEGER", "INT", "FLOAT", "DOUBLE", "NUMERIC")
_DISTANCE = "__koa_distance"
_ROWID = "__koa_rowid"
MAX_AUTO_INDEXES = 16


class CalibrationTable(Table):
    """sqlite-utils Table of calibration records with index-backed nearest queries.

    Parameters
    ----------
    db : sqlite_utils.Database
        The database.
    name : str
        The table name.
    ensure_index : callable
        ``ensure_index(columns)`` creates an index over ``columns`` if needed.
    """

    def __init__(self, db: Any, name: str, ensure_index: Callable[[Iterable[str]], None]):
        super().__init__(db, name)
        self._ensure_index = ensure_index
        self._indexed: set[tuple[str, ...]] = set()
        self._types: dict[str, str] = {}

    def rows_where(
        self,
        where: str | None = None,
        where_args: Any = None,
        order_by: str | None = None,
        select: str = "*",
        limit: int | None = None,
        offset: int | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Rows matching ``where``, as in sqlite-utils; nearest-value orderings use an index.

        Examples
        --------
        >>> from koa_middleware import LocalCalibrationDB
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> list(db.table.rows_where("cal_type = :t", {"t": "dark", "mjd": 1.0},
        ...                          order_by="ABS(mjd_start - :mjd)", limit=1))
        []
        """
        if limit is not None and order_by:
            self._index_for(where, order_by)
            nearest = self._nearest_plan(where, where_args, order_by, limit, offset)
            if nearest is not None:
                return self._nearest_rows(where, where_args, select, limit, *nearest)
        if order_by:
            order_by = f"{order_by}, rowid"
        return super().rows_where(where, where_args, order_by, select, limit, offset)

    def _column_type(self, name: str) -> str | None:
        """The declared type of a column (cached: a column's type never changes)."""
        if name not in self._types:
            self._types = {c.name: (c.type or "").upper() for c in self.columns}
        return self._types.get(name)

    def _index_for(self, where: str | None, order_by: str) -> None:
        """Create (once) an index of the equality columns of ``where`` plus the order column."""
        nearest = _NEAREST_RE.match(order_by)
        plain = _PLAIN_ORDER_RE.match(order_by)
        if nearest is not None:
            order_column = nearest.group("col") or nearest.group("col2")
        elif plain is not None:
            order_column = plain.group(1)
        else:
            return
        equal = [c for c in _EQUALITY_RE.findall(where or "") if c != order_column]
        key = (*dict.fromkeys(equal), order_column)
        if key in self._indexed or len(self._indexed) >= MAX_AUTO_INDEXES:
            return
        self._indexed.add(key)
        if all(self._column_type(column) is not None for column in key):
            try:
                self._ensure_index(key)
            except sqlite3.OperationalError as exc:  # e.g. a read-only cache: query unindexed
                logger.info("Could not create an index on %s: %s", key, exc)

    def _nearest_plan(
        self, where: str | None, where_args: Any, order_by: str, limit: int, offset: int | None
    ) -> tuple[str, str] | None:
        """``(column, parameter)`` when the nearest rewrite is exactly equivalent, else None."""
        match = _NEAREST_RE.match(order_by)
        if match is None or offset or not isinstance(where_args, dict) or limit < 1:
            return None
        column = match.group("col") or match.group("col2")
        param = match.group("param") or match.group("param2")
        if not isinstance(where_args.get(param), int | float):
            return None
        if not (self._column_type(column) or "").startswith(_NUMERIC_TYPES):
            return None
        # ABS(NULL) sorts first in SQLite; rows with no value keep the plain query.
        condition = f"({where})" if where else "1 = 1"
        has_null = self.db.execute(
            # `where` is the caller's own SQL, as in sqlite-utils; `column` matched _NEAREST_RE.
            f'SELECT 1 FROM "{self.name}" WHERE {condition} AND "{column}" IS NULL LIMIT 1',  # noqa: S608
            where_args,
        ).fetchone()
        return None if has_null else (column, param)

    def _nearest_rows(
        self, where: str | None, where_args: dict, select: str, limit: int, column: str, param: str
    ) -> Generator[dict[str, Any], None, None]:
        condition = f"({where})" if where else "1 = 1"
        extra = f'ABS("{column}" - :{param}) AS {_DISTANCE}, rowid AS {_ROWID}'
        below = super().rows_where(
            f'{condition} AND "{column}" < :{param}',
            where_args,
            f'"{column}" DESC, rowid',
            f"{select}, {extra}",
            limit,
        )
        above = super().rows_where(
            f'{condition} AND "{column}" >= :{param}',
            where_args,
            f'"{column}" ASC, rowid',
            f"{select}, {extra}",
            limit,
        )
        nearest = sorted([*below, *above], key=lambda row: (row[_DISTANCE], row[_ROWID]))
        for row in nearest[:limit]:
            del row[_DISTANCE], row[_ROWID]
            yield row

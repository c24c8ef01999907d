"""Reading the records of a local calibration database: queries, lookups, versions.

A mixin of :class:`~koa_middleware.database.local_database.LocalCalibrationDB`
(it needs ``conn``, ``db``, ``table_name``, ``_lock``, ``_table`` and
``ensure_index``; it keeps the table's columns in ``_columns``). Column names
reach SQL only through :func:`quote_identifier`; values always go as bound
parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from ..errors import InvalidRecordError
from ..records import (
    LIFECYCLE_FIELDS,
    normalize_timestamp,
    normalize_version,
    validate_cal_id,
    validate_column_name,
)
from .calibration_table import CalibrationTable
from .side_tables import PUBLISHED_TABLE, RETRACTIONS_TABLE

logger = logging.getLogger(__name__)

__all__ = [
    "RecordReading",
    "StoredVersion",
    "lifecycle_filter_value",
    "parse_order_by",
    "quote_identifier",
]

# Ids per "id IN (...)" lookup (well under SQLite's limit on bound variables).
_LOOKUP_CHUNK = 500

#: Where each lifecycle field of a record is kept, in a query that joins the side tables.
_LIFECYCLE_SOURCES = {
    "published_at": "p.published_at",
    "retracted_at": "r.retracted_at",
    "retract_reason": "r.reason",
}


class StoredVersion(NamedTuple):
    """What a sync compares of a record held here with the archive's record of the same id.

    Attributes
    ----------
    last_updated : str | None
        The record's ``last_updated``.
    retracted_at : str | None
        When the archive retracted it, as kept here; None when it is live here
        or retracted only here (not yet sent to the archive).
    """

    last_updated: str | None
    retracted_at: str | None


def quote_identifier(name: str) -> str:
    """Quote an identifier for SQL, after checking it is a valid column name.

    Raises
    ------
    InvalidRecordError
        If ``name`` is not a valid column name.

    Examples
    --------
    >>> quote_identifier("cal_type")
    '"cal_type"'
    """
    return '"' + validate_column_name(name) + '"'


def parse_order_by(order_by: str) -> str:
    """Turn ``'column'`` or ``'column DESC'`` into safe SQL, refusing anything else.

    Raises
    ------
    InvalidRecordError
        If ``order_by`` is anything but a column name and an optional direction.

    Examples
    --------
    >>> parse_order_by("cal_version desc")
    '"cal_version" DESC'
    """
    parts = order_by.split()
    direction = parts[1].upper() if len(parts) == 2 else "ASC"
    if len(parts) not in (1, 2) or direction not in ("ASC", "DESC"):
        raise InvalidRecordError(
            f"Invalid order_by {order_by!r}: use a column name, optionally followed by ASC or DESC."
        )
    return f"{quote_identifier(parts[0])} {direction}"


def lifecycle_filter_value(name: str, value: Any) -> str | None:
    """The value a lifecycle field (:data:`LIFECYCLE_FIELDS`) is compared with in a filter.

    An empty value (``--where retracted_at=``) or None stands for "none": a
    calibration never retracted (or not published by an archive). A time is
    normalized as records' times are.

    Parameters
    ----------
    name : str
        ``published_at``, ``retracted_at`` or ``retract_reason``.
    value : Any
        The filter's value.

    Returns
    -------
    str | None
        The normalized value; None for "none".

    Raises
    ------
    InvalidRecordError
        If a time is not a timestamp.

    Examples
    --------
    >>> lifecycle_filter_value("retracted_at", "2026-01-02")
    '2026-01-02T00:00:00.000'
    >>> lifecycle_filter_value("retract_reason", "") is None
    True
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if name == "retract_reason":
        return str(value)
    return normalize_timestamp(value, name)


class RecordReading:
    """The read side of the local database."""

    @property
    def _quoted_table(self) -> str:
        """The records' table name, quoted for SQL."""
        return quote_identifier(self.table_name)

    def _read_columns(self) -> dict[str, str]:
        rows = self.conn.execute(f"PRAGMA table_info({self._quoted_table})").fetchall()
        return {row[1]: row[2] for row in rows}

    def refresh_columns(self) -> None:
        """Read the table's columns again into the list that writes and lookups consult.

        That list is kept to spare a ``PRAGMA`` per write; it must follow the
        table when a rollback undoes an ``ALTER TABLE`` (see
        :meth:`~koa_middleware.database.local_database.LocalCalibrationDB.savepoint`).

        Examples
        --------
        >>> from koa_middleware import LocalCalibrationDB
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> db.refresh_columns()
        >>> "cal_type" in db.columns
        True
        """
        self._columns = self._read_columns()

    @property
    def columns(self) -> list[str]:
        """The names of the table's columns."""
        return list(self._read_columns())

    @property
    def table(self) -> CalibrationTable:
        """The sqlite-utils Table of the records, for ``rows_where`` and friends."""
        if self._table is None:
            self._table = CalibrationTable(self.db, self.table_name, self.ensure_index)
        return self._table

    @property
    def rows(self) -> Iterator[dict]:
        """Every record, as dicts."""
        return self.table.rows

    def rows_where(self, where: str | None = None, where_args: Any = None, **kwargs) -> Iterator:
        """Records matching an SQL ``where`` fragment; see sqlite-utils' ``Table.rows_where``."""
        return self.table.rows_where(where, where_args, **kwargs)

    def custom_query(self, sql: str, params: Any = None) -> list[dict]:
        """Run a read-only SQL statement with bound parameters and return its rows as dicts."""
        with self._lock:
            cursor = self.conn.execute(sql, params or ())
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor]

    def query(
        self,
        filename: str | None = None,
        cal_type: str | None = None,
        cal_id: str | None = None,
        cal_version_min: str | None = None,
        cal_version_max: str | None = None,
        date_time_start: str | None = None,
        date_time_end: str | None = None,
        last_updated_start: str | None = None,
        last_updated_end: str | None = None,
        origin: str | None = None,
        order_by: str = "last_updated",
        fetch: str = "all",
        with_lifecycle: bool = False,
        **filters: Any,
    ) -> list[dict] | dict | None:
        """Records matching every given filter, ordered by ``order_by``.

        Records that tie on ``order_by`` come in the order they were added.

        Parameters
        ----------
        filename : str | None
            The record of this file: one record or None; other filters are ignored.
        cal_id : str | None
            The record with this id: one record or None; other filters are ignored.
        cal_type, origin : str | None
            Equality filters.
        cal_version_min, cal_version_max : str | None
            Inclusive bounds on ``cal_version``.
        date_time_start, date_time_end : str | None
            Inclusive bounds on ``datetime_obs``.
        last_updated_start, last_updated_end : str | None
            Inclusive bounds on ``last_updated``.
        order_by : str
            A column, optionally followed by ``ASC`` or ``DESC``.
        fetch : {'all', 'first'}
            ``'first'`` returns one record or None.
        with_lifecycle : bool
            Give every record its lifecycle fields, kept beside the records:
            ``published_at`` (when an archive published it), ``retracted_at``
            and ``retract_reason`` (None while it is live). A filter on one of
            them turns this on.
        **filters
            Equality filters on any other column, and on the lifecycle fields
            (see :func:`lifecycle_filter_value`: an empty value matches "none").

        Returns
        -------
        list[dict] | dict | None
            A list; one record or None with ``cal_id``, ``filename`` or
            ``fetch='first'``.

        Raises
        ------
        InvalidRecordError
            If a filter names a column the table does not have (a typo such as
            ``datetime_start``): the message lists the columns it has.

        Examples
        --------
        >>> from koa_middleware import LocalCalibrationDB
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> db.query(cal_type="dark")
        []
        """
        if fetch not in ("all", "first"):
            raise ValueError(f"Invalid fetch {fetch!r}: use 'all' or 'first'.")
        joined = with_lifecycle or any(name in LIFECYCLE_FIELDS for name in filters)
        if not joined:
            if cal_id is not None:
                return self.query_id(cal_id)
            if filename is not None:
                return self.query_filename(filename)
        # With the side tables joined, the records' columns are named through "t.".
        t = "t." if joined else ""
        conditions: list[str] = []
        params: list[Any] = []

        def add(sql: str, value: Any) -> None:
            conditions.append(sql)
            params.append(value)

        if cal_id is not None or filename is not None:  # one record, other filters ignored
            fetch = "first"
            if cal_id is not None:
                add(f"{t}id = ?", validate_cal_id(cal_id))
            else:
                add(f"{t}filename = ?", filename)
            filters = {}
        else:
            if cal_type is not None:
                add(f"{t}cal_type = ?", cal_type)
            if origin is not None:
                add(f"{t}origin = ?", str(origin).upper())
            bounds = (
                ("cal_version", ">=", cal_version_min, normalize_version),
                ("cal_version", "<=", cal_version_max, normalize_version),
                ("datetime_obs", ">=", date_time_start, normalize_timestamp),
                ("datetime_obs", "<=", date_time_end, normalize_timestamp),
                ("last_updated", ">=", last_updated_start, normalize_timestamp),
                ("last_updated", "<=", last_updated_end, normalize_timestamp),
            )
            for column, operator, value, normalize in bounds:
                if value is not None:
                    add(f"{t}{column} {operator} ?", normalize(value))
        known = self._read_columns() if filters else {}
        for column, value in filters.items():
            if column in LIFECYCLE_FIELDS:
                self._lifecycle_condition(column, value, conditions, params)
                continue
            if validate_column_name(column) not in known:
                raise InvalidRecordError(
                    f"No record of table {self.table_name!r} has a column {column!r}; "
                    f"its columns are {', '.join(sorted([*known, *LIFECYCLE_FIELDS]))}."
                )
            add(f"{t}{quote_identifier(column)} = ?", value)
        sql = self._lifecycle_select() if joined else f"SELECT * FROM {self._quoted_table}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += f" ORDER BY {t}{parse_order_by(order_by)}, {t}rowid"
        if fetch == "first":
            rows = self.custom_query(sql + " LIMIT 1", params)
            return rows[0] if rows else None
        return self.custom_query(sql, params)

    def _lifecycle_select(self) -> str:
        """SELECT of the records ``t`` with their lifecycle fields from the side tables."""
        fields = ", ".join(f"{source} AS {name}" for name, source in _LIFECYCLE_SOURCES.items())
        return (
            f"SELECT t.*, {fields} FROM {self._quoted_table} AS t "
            f'LEFT JOIN "{PUBLISHED_TABLE}" AS p ON p.id = t.id '
            f'LEFT JOIN "{RETRACTIONS_TABLE}" AS r ON r.id = t.id'
        )

    @staticmethod
    def _lifecycle_condition(name: str, value: Any, conditions: list, params: list) -> None:
        """Add the condition of a filter on a lifecycle field (empty: the field is none)."""
        wanted = lifecycle_filter_value(name, value)
        if wanted is None:
            conditions.append(f"{_LIFECYCLE_SOURCES[name]} IS NULL")
        else:
            conditions.append(f"{_LIFECYCLE_SOURCES[name]} = ?")
            params.append(wanted)

    def query_id(self, cal_id: str) -> dict | None:
        """The record with this id, or None."""
        rows = self.custom_query(
            f"SELECT * FROM {self._quoted_table} WHERE id = ?",
            (validate_cal_id(cal_id),),
        )
        return rows[0] if rows else None

    def query_filename(self, filename: str) -> dict | None:
        """The record whose file has this name, or None."""
        rows = self.custom_query(
            f"SELECT * FROM {self._quoted_table} WHERE filename = ?", (filename,)
        )
        return rows[0] if rows else None

    def ids_present(self, ids: Iterable[str]) -> set[str]:
        """Return those of ``ids`` that have a record here.

        Examples
        --------
        >>> from koa_middleware import LocalCalibrationDB
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> db.ids_present(["1b4e28ba-2fa1-4d2b-883f-0016d3cca427"])
        set()
        """
        present: set[str] = set()
        for chunk in _chunks(list(ids)):
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT id FROM {self._quoted_table} WHERE id IN ({marks})"
            with self._lock:
                present.update(row[0] for row in self.conn.execute(sql, chunk))
        return present

    def versions_of(self, ids: Iterable[str]) -> dict[str, StoredVersion]:
        """Return, for each of ``ids`` held here, what a sync compares with the archive's record.

        One indexed lookup per 500 ids, reading only the id, ``last_updated``
        and the archive's retraction (:class:`StoredVersion`), so a sync can
        skip the records it already holds unchanged without reading them.

        Examples
        --------
        >>> from koa_middleware import LocalCalibrationDB
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> cal_id = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"
        >>> _ = db.add({"id": cal_id, "filename": "d.fits", "cal_type": "dark",
        ...             "datetime_obs": "2024-01-01", "last_updated": "2024-02-01"})
        >>> db.versions_of([cal_id])[cal_id]
        StoredVersion(last_updated='2024-02-01T00:00:00.000', retracted_at=None)
        """
        found: dict[str, StoredVersion] = {}
        for chunk in _chunks(list(ids)):
            marks = ", ".join("?" * len(chunk))
            # Only the archive's retractions (pushed): one made here and not yet sent
            # is not part of the archive's record.
            sql = (
                f"SELECT t.id, t.last_updated, r.retracted_at FROM {self._quoted_table} AS t "
                f'LEFT JOIN "{RETRACTIONS_TABLE}" AS r ON r.id = t.id AND r.pushed = 1 '
                f"WHERE t.id IN ({marks})"
            )
            with self._lock:
                for cal_id, last_updated, retracted_at in self.conn.execute(sql, chunk):
                    found[cal_id] = StoredVersion(last_updated, retracted_at)
        return found

    def records_updated_after(self, timestamp: str) -> list[dict]:
        """Return the records whose ``last_updated`` is later than ``timestamp``.

        They come in the order of ``last_updated``, ties in the order they were added.

        Examples
        --------
        >>> from koa_middleware import LocalCalibrationDB
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> db.records_updated_after("2024-01-01T00:00:00.000")
        []
        """
        return self.custom_query(
            f"SELECT * FROM {self._quoted_table} WHERE last_updated > ? "
            "ORDER BY last_updated, rowid",
            (timestamp,),
        )

    def get_last_updated(self) -> str | None:
        """The newest ``last_updated`` of any record, or None when there are none."""
        row = self.conn.execute(f"SELECT MAX(last_updated) FROM {self._quoted_table}").fetchone()
        return row[0]

    def get_column(self, column: str) -> list:
        """Every value of one column, in the order the records were added.

        Examples
        --------
        >>> from koa_middleware import LocalCalibrationDB
        >>> LocalCalibrationDB(":memory:", "hispec").get_column(column="filename")
        []
        """
        sql = f"SELECT {quote_identifier(column)} FROM {self._quoted_table} ORDER BY rowid"
        return [row[0] for row in self.conn.execute(sql)]

    def count_by(self, *columns: str) -> list[tuple]:
        """How many records share each combination of ``columns``' values, counted in SQL.

        Examples
        --------
        >>> from koa_middleware import LocalCalibrationDB
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> db.count_by("cal_type", "origin")
        []
        """
        known = self._read_columns()
        unknown = [c for c in columns if validate_column_name(c) not in known]
        if not columns or unknown:
            raise InvalidRecordError(
                f"Cannot count records by {', '.join(map(repr, unknown)) or 'no column'}; "
                f"name one or more of the columns of {self.table_name!r}: "
                f"{', '.join(sorted(known))}."
            )
        names = ", ".join(quote_identifier(c) for c in columns)
        sql = f"SELECT {names}, COUNT(*) FROM {self._quoted_table} GROUP BY {names}"
        with self._lock:
            return [tuple(row) for row in self.conn.execute(sql)]

    def _equal_to(self, values: Mapping[str, Any]) -> tuple[list[str], list[Any]] | None:
        """SQL conditions for columns equal to ``values`` (None: IS NULL).

        None when no row can match (a value for a column the table lacks).
        """
        conditions: list[str] = []
        params: list[Any] = []
        for column, value in values.items():
            if validate_column_name(column) not in self._columns:
                self.refresh_columns()  # another process may have added it
            if column not in self._columns:
                if value is None:
                    continue  # every row lacks the column
                return None
            if value is None:
                conditions.append(f"{quote_identifier(column)} IS NULL")
            else:
                conditions.append(f"{quote_identifier(column)} = ?")
                params.append(value)
        return conditions, params

    def rows_matching(
        self, values: Mapping[str, Any], order_by: str | None = None, limit: int | None = None
    ) -> list[dict]:
        """Records whose columns equal ``values``; None matches only an empty value.

        Parameters
        ----------
        values : Mapping
            Column -> value.
        order_by : str | None
            A column, optionally followed by ``ASC`` or ``DESC``; ties (and
            everything without it) in the order the records were added.
        limit : int | None
            At most this many records.

        Examples
        --------
        >>> from koa_middleware import LocalCalibrationDB
        >>> LocalCalibrationDB(":memory:", "hispec").rows_matching({"cal_type": "dark"})
        []
        """
        where = self._equal_to(values)
        if where is None:
            return []
        conditions, params = where
        sql = f"SELECT * FROM {self._quoted_table}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += f" ORDER BY {parse_order_by(order_by) + ', ' if order_by else ''}rowid"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.custom_query(sql, params)

    def max_version(self, family: Mapping[str, Any], origin: str) -> int:
        """The highest version number (0 if none) within a version family and origin."""
        where = self._equal_to({**family, "origin": origin})
        if where is None:
            return 0
        conditions, params = where
        row = self.conn.execute(
            f"SELECT MAX(CAST(cal_version AS INTEGER)) FROM {self._quoted_table} "
            f"WHERE {' AND '.join(conditions)}",
            params,
        ).fetchone()
        return row[0] or 0


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _LOOKUP_CHUNK):
        yield items[start : start + _LOOKUP_CHUNK]

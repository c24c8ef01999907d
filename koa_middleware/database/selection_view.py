"""The records a selection may choose: live ones, or those published as of a time.

Selectors query the database object they are handed, often with SQL of their
own (``db.rows_where(...)``, ``db.custom_query(...)``, even ``db.conn``). To
keep retracted calibrations from them without changing a line of theirs, a
:class:`SelectionView` is a second, read-only connection to the same SQLite
file on which a temporary view carries the table's own name: SQLite looks up
an unqualified name in the ``temp`` schema first, so every query the selector
writes reads the view, and the view shows only what may be chosen.

An in-memory database (``':memory:'``) is selected the same way: it is one
SQLite shared-cache database in memory (see
:attr:`LocalCalibrationDB.memory_uri
<koa_middleware.database.local_database.LocalCalibrationDB.memory_uri>`), so the
view opens a second connection to it. That connection reads without taking
table locks (``read_uncommitted``), so neither connection waits for the other;
and because a schema shared in memory never tells this connection that the
table changed, the view is made again whenever the table's columns changed.

Live records are those without a retraction in ``_koa_retractions``. Seen
``as_of`` a time, they are the records the archive had published by then
(``_koa_published``, else the record's ``last_updated``) and had not
retracted by then.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import TYPE_CHECKING

import sqlite_utils

from ..records import normalize_timestamp
from ..sqlite_wal import connect_readonly
from .calibration_table import CalibrationTable
from .reading import RecordReading, quote_identifier
from .side_tables import PUBLISHED_TABLE, RETRACTIONS_TABLE

if TYPE_CHECKING:
    from .local_database import LocalCalibrationDB

logger = logging.getLogger(__name__)

__all__ = ["SelectionView", "live_condition"]


def live_condition(as_of: str | None = None) -> str:
    """The SQL condition on a record ``t`` that makes it selectable (as of a time).

    ``as_of`` must be a normalized UTC timestamp; it is written into the SQL
    (a view takes no parameters), which its fixed form makes safe.

    Examples
    --------
    >>> live_condition()
    'NOT EXISTS (SELECT 1 FROM main."_koa_retractions" r WHERE r.id = t.id)'
    """
    if as_of is None:
        return f'NOT EXISTS (SELECT 1 FROM main."{RETRACTIONS_TABLE}" r WHERE r.id = t.id)'
    stamp = normalize_timestamp(as_of, "as_of")
    return (
        f'NOT EXISTS (SELECT 1 FROM main."{RETRACTIONS_TABLE}" r WHERE r.id = t.id '
        f"AND r.retracted_at <= '{stamp}') AND COALESCE((SELECT p.published_at FROM "
        f"main.\"{PUBLISHED_TABLE}\" p WHERE p.id = t.id), t.last_updated) <= '{stamp}'"
    )


class SelectionView(RecordReading):
    """A read-only view of a local database that shows selectors only what they may choose.

    Parameters
    ----------
    source : LocalCalibrationDB
        The database: a file, or one in memory (shared with the view through
        its :attr:`~koa_middleware.database.local_database.LocalCalibrationDB.memory_uri`).
    as_of : str | None
        Show the records as they were at this UTC time, else the live ones.

    Raises
    ------
    InvalidRecordError
        If ``as_of`` is not a timestamp.

    Examples
    --------
    >>> from koa_middleware import LocalCalibrationDB
    >>> db = LocalCalibrationDB(":memory:", "hispec")
    >>> _ = db.add({"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427", "filename": "d.fits",
    ...             "cal_type": "dark", "datetime_obs": "2024-01-01"})
    >>> db.set_retractions({"1b4e28ba-2fa1-4d2b-883f-0016d3cca427":
    ...                     ("2026-01-01T00:00:00.000", "hot pixels")}, pushed=False)
    >>> len(db), len(SelectionView(db))
    (1, 0)
    """

    def __init__(self, source: LocalCalibrationDB, as_of: str | None = None):
        self.source = source
        self.db_path = source.db_path
        self.table_name = source.table_name
        self.as_of = None if as_of is None else normalize_timestamp(as_of, "as_of")
        self._lock = threading.RLock()
        self._table: CalibrationTable | None = None
        self._in_memory = source.memory_uri is not None
        self._conn = _connect(source)
        self._db = sqlite_utils.Database(self._conn)
        self._schema_version: int | None = None
        self._create_view()
        self._columns = self._read_columns()

    def __repr__(self) -> str:
        when = f", as_of={self.as_of!r}" if self.as_of else ""
        return f"SelectionView({self.db_path!r}, table_name={self.table_name!r}{when})"

    def _create_view(self) -> None:
        """(Re)create the temporary view that carries the table's name on this connection."""
        table = quote_identifier(self.table_name)
        statements = [
            f"DROP VIEW IF EXISTS temp.{table}",
            f"CREATE TEMP VIEW {table} AS SELECT t.* FROM main.{table} AS t "
            f"WHERE {live_condition(self.as_of)}",
        ]
        if self._in_memory:  # the view is this connection's only write
            statements = ["PRAGMA query_only = 0", *statements, "PRAGMA query_only = 1"]
            self._schema_version = self._main_schema_version()
        for statement in statements:
            self._conn.execute(statement)

    def _main_schema_version(self) -> int:
        return self._conn.execute("PRAGMA main.schema_version").fetchone()[0]

    def _follow_schema(self) -> None:
        """Make the view again if the table's schema changed since (in-memory databases only).

        A file's schema change reaches this connection, which then reads the
        table's columns afresh; a shared in-memory schema changes under it
        without notice, and the view would keep the old column list.
        """
        if not self._in_memory:
            return
        with self._lock:
            try:
                if self._main_schema_version() == self._schema_version:
                    return
                self._create_view()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                # the writer is changing the schema now; the next read tries again
                logger.debug("Selection view of %s not renewed yet: %s", self.table_name, exc)
                return
            self._columns = self._read_columns()

    @property
    def conn(self) -> sqlite3.Connection:
        """The view's connection: unqualified queries of the table's name read the view."""
        self._follow_schema()
        return self._conn

    @property
    def db(self) -> sqlite_utils.Database:
        """The view's connection as a sqlite-utils ``Database``."""
        self._follow_schema()
        return self._db

    @property
    def table(self) -> CalibrationTable:
        """The sqlite-utils Table of the records selection sees."""
        self._follow_schema()
        return super().table

    def ensure_index(self, columns) -> None:
        """Create the index on the source database (this connection only reads)."""
        self.source.ensure_index(columns)

    def __len__(self) -> int:
        return self.conn.execute(f"SELECT COUNT(*) FROM {self._quoted_table}").fetchone()[0]

    def close(self) -> None:
        """Close the view's connection."""
        self._conn.close()


def _connect(source: LocalCalibrationDB) -> sqlite3.Connection:
    """A read-only connection to ``source``'s database: its file, or its shared memory."""
    if source.memory_uri is None:
        return connect_readonly(source.db_path)
    conn = sqlite3.connect(
        source.memory_uri, uri=True, isolation_level=None, check_same_thread=False
    )
    # Read without table locks: the writer's connection never waits for a
    # selection, and a selection never fails on the writer's open transaction.
    conn.execute("PRAGMA read_uncommitted = 1")
    return conn

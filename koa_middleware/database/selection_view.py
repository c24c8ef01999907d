"""The records a selection may choose: live ones, or those published as of a time.

Selectors query the database object they are handed, often with SQL of their
own (``db.rows_where(...)``, ``db.custom_query(...)``, even ``db.conn``). To
keep retracted calibrations from them without changing a line of theirs, a
:class:`SelectionView` is a second, read-only connection to the same SQLite
file on which a temporary view carries the table's own name: SQLite looks up
an unqualified name in the ``temp`` schema first, so every query the selector
writes reads the view, and the view shows only what may be chosen.

Live records are those without a retraction in ``_koa_retractions``. Seen
``as_of`` a time, they are the records the archive had published by then
(``_koa_published``, else the record's ``last_updated``) and had not
retracted by then.
"""

from __future__ import annotations

import logging
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
        The database (a file; an in-memory database cannot be shared, so it is
        used as it is).
    as_of : str | None
        Show the records as they were at this UTC time, else the live ones.

    Raises
    ------
    InvalidRecordError
        If ``as_of`` is not a timestamp.

    Examples
    --------
    >>> view = SelectionView(store.local_db)  # doctest: +SKIP
    >>> selector.select(frame, view)  # doctest: +SKIP
    """

    def __init__(self, source: LocalCalibrationDB, as_of: str | None = None):
        self.source = source
        self.db_path = source.db_path
        self.table_name = source.table_name
        self.as_of = None if as_of is None else normalize_timestamp(as_of, "as_of")
        self._lock = threading.RLock()
        self._table: CalibrationTable | None = None
        self.conn = connect_readonly(source.db_path)
        table = quote_identifier(self.table_name)
        self.conn.execute(
            f"CREATE TEMP VIEW {table} AS SELECT t.* FROM main.{table} AS t "
            f"WHERE {live_condition(self.as_of)}"
        )
        self.db = sqlite_utils.Database(self.conn)
        self._columns = self._read_columns()

    def __repr__(self) -> str:
        when = f", as_of={self.as_of!r}" if self.as_of else ""
        return f"SelectionView({self.db_path!r}, table_name={self.table_name!r}{when})"

    def ensure_index(self, columns) -> None:
        """Create the index on the source database (this connection only reads)."""
        self.source.ensure_index(columns)

    def __len__(self) -> int:
        return self.conn.execute(f"SELECT COUNT(*) FROM {self._quoted_table}").fetchone()[0]

    def close(self) -> None:
        """Close the view's connection."""
        self.conn.close()

"""LocalCalibrationDB: the calibration records of one instrument in a SQLite file.

The database runs in WAL mode with a busy timeout, so several pipeline
processes can read and write one cache at once. Column names that reach SQL
come only from :func:`koa_middleware.records.validate_column_name`; values
always go as bound parameters.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import chain, groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import sqlite_utils

# Names the reference's module carries, which pipelines import from here: sqlite-utils'
# Database and NotFoundError, and two time helpers.
from sqlite_utils import Database  # noqa: F401
from sqlite_utils.db import NotFoundError  # noqa: F401

from ..errors import InvalidRecordError
from ..record_batches import RecordRun, split_run_lifecycle, validate_runs
from ..records import (
    LIFECYCLE_FIELDS,
    LOCAL_REQUIRED_FIELDS,
    validate_cal_id,
    validate_column_name,
)
from ..sqlite_wal import connect
from ..timestamps import utc_now
from ..utils import datetime_to_isot_ms, postgres_http_date_to_iso  # noqa: F401
from .bulk_load import indexes_built_after
from .calibration_table import CalibrationTable
from .reading import RecordReading, quote_identifier
from .side_tables import (
    FILES_TABLE,
    META_TABLE,
    PUBLISHED_TABLE,
    RETRACTIONS_TABLE,
    USES_TABLE,
    SideTables,
)
from .transactions import savepoint

logger = logging.getLogger(__name__)

__all__ = ["LocalCalibrationDB"]

#: Columns every calibration table starts with, and their SQLite types.
BASE_COLUMNS = {
    "id": "TEXT",
    "filename": "TEXT",
    "cal_type": "TEXT",
    "datetime_obs": "TEXT",
    "origin": "TEXT",
    "cal_version": "TEXT",
    "last_updated": "TEXT",
    "file_md5": "TEXT",
    "file_size": "INTEGER",
}
INDEXED_COLUMNS = ("cal_type", "datetime_obs", "last_updated", "origin")
# One name serves every savepoint: SQLite rolls back to the innermost of that name.
_SAVEPOINT = "koa_step"
_SQL_TYPES = {bool: "INTEGER", int: "INTEGER", float: "REAL"}
_SIDE_TABLES = (META_TABLE, FILES_TABLE, RETRACTIONS_TABLE, PUBLISHED_TABLE, USES_TABLE)


class LocalCalibrationDB(RecordReading, SideTables):
    """The calibration records of one instrument in a SQLite database.

    Parameters
    ----------
    db_path : str | Path
        Path of the SQLite file, or ``':memory:'``.
    table_name : str
        Name of the table holding the records (the lower-cased instrument name).
    timeout : float
        Seconds to wait for another process's write lock before failing.

    Examples
    --------
    >>> db = LocalCalibrationDB(":memory:", "hispec")
    >>> _ = db.add({"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427", "filename": "d.fits",
    ...             "cal_type": "dark", "datetime_obs": "2024-01-01T00:00:00.000"})
    >>> db.query(cal_type="dark")[0]["filename"]
    'd.fits'
    """

    def __init__(self, db_path: str | Path, table_name: str, timeout: float = 30.0):
        self.db_path = str(db_path)
        #: For ``':memory:'``, the URI of this database in memory, which other
        #: connections of this process open (the selection view does); None for a file.
        self.memory_uri: str | None = None
        self.table_name = validate_column_name(table_name)
        #: Held while the connection is in use: threads of one process (a web server's
        #: workers) share it, and take this lock around each use.
        self.lock = threading.RLock()
        self._lock = self.lock
        self._depth = 0
        if self.db_path == ":memory:":
            self.memory_uri = f"file:koa-{uuid.uuid4().hex}?mode=memory&cache=shared"
            self.conn = _connect_memory(self.memory_uri, timeout)
        else:
            self.conn = connect(self.db_path, timeout)
        self.db = sqlite_utils.Database(self.conn)
        self._closed = False
        self._table: CalibrationTable | None = None
        self._create_schema()
        self._columns = self._read_columns()

    def __repr__(self) -> str:
        return f"LocalCalibrationDB(db_path={self.db_path!r}, table_name={self.table_name!r})"

    # -- schema -------------------------------------------------------------

    def _create_schema(self) -> None:
        """Create the tables and indexes that are missing.

        Opening an existing cache only reads ``sqlite_master`` (one query, no
        lock): the write transaction that creates them, which would wait for
        another process's writes, is taken only when something is missing.
        """
        if self._schema_names() >= self._schema_wanted():
            return
        self._write_schema()

    def _schema_wanted(self) -> set[tuple[str, str]]:
        """The ``(type, name)`` of every table and index :meth:`_write_schema` creates."""
        wanted = {
            ("table", self.table_name),
            ("index", f"ux_{self.table_name}_filename"),
            *(("table", name) for name in _SIDE_TABLES),
        }
        wanted.update(("index", f"ix_{self.table_name}_{name}") for name in INDEXED_COLUMNS)
        wanted.update(("trigger", name) for name in self._deletion_triggers())
        return {(kind, name.lower()) for kind, name in wanted}

    def _schema_names(self) -> set[tuple[str, str]]:
        """The ``(type, name)`` of the tables and indexes the database holds.

        Names are compared without case, as SQLite does.
        """
        rows = self.conn.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index', 'trigger')"
        )
        return {(kind, name.lower()) for kind, name in rows}

    def _write_schema(self) -> None:
        table = quote_identifier(self.table_name)
        columns = ", ".join(
            f"{quote_identifier(name)} {kind}{' PRIMARY KEY' if name == 'id' else ''}"
            for name, kind in BASE_COLUMNS.items()
        )
        with self.write_transaction():
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            self.conn.execute(
                f'CREATE UNIQUE INDEX IF NOT EXISTS "ux_{self.table_name}_filename" '
                f'ON {table} ("filename")'
            )
            for name in INDEXED_COLUMNS:
                self.conn.execute(
                    f'CREATE INDEX IF NOT EXISTS "ix_{self.table_name}_{name}" '
                    f"ON {table} ({quote_identifier(name)})"
                )
            self.conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{META_TABLE}" (key TEXT PRIMARY KEY, value TEXT)'
            )
            self.conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{FILES_TABLE}" (id TEXT PRIMARY KEY, '
                "filename TEXT, file_md5 TEXT, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, "
                "inode INTEGER)"
            )
            self.conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{RETRACTIONS_TABLE}" (id TEXT PRIMARY KEY, '
                "retracted_at TEXT NOT NULL, reason TEXT NOT NULL, pushed INTEGER DEFAULT 0)"
            )
            self.conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{PUBLISHED_TABLE}" '
                "(id TEXT PRIMARY KEY, published_at TEXT NOT NULL)"
            )
            self.conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{USES_TABLE}" (id TEXT PRIMARY KEY, last_used REAL)'
            )
            for name, watched in self._deletion_triggers().items():
                # Counts deletions, whoever makes them, for :meth:`change_mark`; an
                # upsert deletes nothing, so a sync's inserts do not run it.
                key = f"deletions {watched}"
                self.conn.execute(
                    f'CREATE TRIGGER IF NOT EXISTS "{name}" AFTER DELETE ON "{watched}" BEGIN '
                    f"INSERT INTO \"{META_TABLE}\" (key, value) VALUES ('{key}', 1) "
                    "ON CONFLICT(key) DO UPDATE SET value = value + 1; END"
                )

    def ensure_index(self, columns: Iterable[str]) -> None:
        """Create an index over ``columns`` (in order) if there is none yet.

        Columns the table does not have yet are skipped. Selectors and version
        families that filter on instrument columns use this to stay fast.

        Examples
        --------
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> db.ensure_index(["cal_type", "datetime_obs"])
        """
        columns = list(columns)
        with self._lock:
            # The remembered columns serve while they know every column asked for.
            if not all(c in self._columns for c in columns):
                self.refresh_columns()  # another process may have added them
            known = self._columns
        names = [validate_column_name(c) for c in columns if c in known]
        if not names:
            return
        index = f"ix_{self.table_name}_" + "_".join(names)
        if len(index) > 60:  # long names: a digest keeps them short and the same in every process
            index = (
                index[:50]
                + "_"
                + hashlib.md5(index.encode(), usedforsecurity=False).hexdigest()[:8]
            )
        if self._has_index(index):
            return  # a read: the write lock is taken only to create the index
        with self.write_transaction():
            self.conn.execute(
                f'CREATE INDEX IF NOT EXISTS "{index}" ON {self._quoted_table} '
                f"({', '.join(quote_identifier(n) for n in names)})"
            )

    def _has_index(self, name: str) -> bool:
        """Whether the database holds an index of this name (compared without case, as SQLite)."""
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND lower(name) = lower(?)"
        with self._lock:
            return self.conn.execute(sql, (name,)).fetchone() is not None

    def _add_missing_columns(self, runs: list[list[dict]], alter: bool) -> None:
        """Add columns that the records bring, inside the current write transaction.

        Column names are compared without case, as SQLite does: ``EXPTIME`` and
        ``exptime`` are one column, stored under the spelling that came first.

        Raises
        ------
        InvalidRecordError
            If ``alter`` is False and columns are missing, or SQLite refuses to
            add them (e.g. past its limit on columns).
        """
        known = {name.lower() for name in self._columns}
        wanted: dict[str, tuple[str, Any]] = {}
        # Runs share their fields: each new field is looked for once per run.
        for run in runs:
            for key in run[0]:
                folded = key.lower()
                if folded not in known and wanted.get(folded, (key, None))[1] is None:
                    value = next((rec[key] for rec in run if rec[key] is not None), None)
                    wanted[folded] = (key, value)
        if not wanted:
            return
        self.refresh_columns()  # another process may have added them
        known = {name.lower() for name in self._columns}
        missing = {name: value for folded, (name, value) in wanted.items() if folded not in known}
        if not missing:
            return
        if not alter:
            raise InvalidRecordError(
                f"The records bring new column(s) {sorted(missing)} that table "
                f"{self.table_name!r} lacks; pass alter=True to add them."
            )
        for name, value in missing.items():
            kind = _SQL_TYPES.get(type(value), "TEXT")
            try:
                self.conn.execute(
                    f"ALTER TABLE {self._quoted_table} ADD COLUMN {quote_identifier(name)} {kind}"
                )
            except sqlite3.OperationalError as exc:
                raise InvalidRecordError(
                    f"Could not add column {name!r} to table {self.table_name!r}: {exc}. "
                    f"The table has {len(self._columns)} columns; store fewer fields."
                ) from exc
            logger.info("Added column %s (%s) to %s", name, kind, self.table_name)
        self.refresh_columns()

    # -- transactions ------------------------------------------------------

    @contextmanager
    def write_transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold SQLite's write lock for the enclosed block; commit on success, roll back on error.

        Nested use joins the outer transaction.

        Examples
        --------
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> with db.write_transaction():
        ...     db.set_meta("cursor", "42")
        >>> db.get_meta("cursor")
        '42'
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Make the enclosed writes one step that an error undoes alone.

        Inside a write transaction, an error in the block undoes the block's
        writes only (columns it added included) and is raised again; the
        transaction goes on. Outside one, the block is its own write
        transaction. Savepoints nest.

        Raises
        ------
        Exception
            Whatever the block raised, after its writes were undone.

        Examples
        --------
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> with db.write_transaction():
        ...     db.set_meta("kept", "1")
        ...     try:
        ...         with db.savepoint():
        ...             db.set_meta("undone", "1")
        ...             raise ValueError("refused")
        ...     except ValueError:
        ...         pass
        >>> db.get_meta("kept"), db.get_meta("undone")
        ('1', None)
        """
        with self.write_transaction():
            try:
                with savepoint(self.conn, _SAVEPOINT):
                    yield
            except BaseException:
                # An undone ALTER TABLE must not stay in the remembered columns.
                self.refresh_columns()
                raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Group writes: commit them together on success, roll all back on error.

        The error is raised again after the rollback. Same as
        :meth:`write_transaction`.

        Examples
        --------
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> with db.transaction():
        ...     db.set_meta("cursor", "7")
        """
        with self.write_transaction() as conn:
            yield conn

    # -- writing -----------------------------------------------------------

    def add(
        self,
        cals: Mapping | Iterable[Mapping],
        alter: bool = True,
        *,
        shared: dict[str, str] | None = None,
    ) -> dict | list[dict]:
        """Insert or update records by ``id``, all in one transaction.

        Rows keep the order in which they were first added (bulk or not), so
        selectors whose ordering ties get the earliest-added record first.

        Parameters
        ----------
        cals : dict | iterable of dict
            One record or many. Each needs ``id``, ``filename``, ``cal_type`` and
            ``datetime_obs``; values are validated and normalized. A record
            without ``last_updated`` gets the current UTC time (one time for the
            whole call).
        alter : bool
            Add columns that the records bring and the table lacks. If False,
            such records are refused.
        shared : dict | None
            Make equal field names and short repeated values of the records
            returned share one object, through this dict (see
            :func:`~koa_middleware.record_batches.validate_records`): a sync that
            returns many records keeps them small.

        Returns
        -------
        dict | list[dict]
            The record as stored for one record, the list of them for many:
            new dicts (the records given are left as they were).

        Raises
        ------
        InvalidRecordError
            If any record breaks a rule, or two records claim one file name;
            then nothing is written.

        Examples
        --------
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> db.add({"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427", "filename": "d.fits",
        ...         "cal_type": "dark", "datetime_obs": "2024-01-01"})["datetime_obs"]
        '2024-01-01T00:00:00.000'
        """
        single = isinstance(cals, Mapping)
        # Ids stay the caller's strings: a CalId each would cost more than the rest of the
        # checks of a large batch, and nothing here looks them up again.
        runs = validate_runs(
            [cals] if single else cals, LOCAL_REQUIRED_FIELDS, shared, mark_ids=shared is not None
        )
        # One time for the whole batch, as the reference does, for records without one.
        stamp = utc_now()
        runs = [_with_last_updated(run, stamp) for run in runs]
        records = self._store_runs(runs, alter)
        return records[0] if single else records

    def add_validated(self, records: list[dict], alter: bool = True) -> list[dict]:
        """Insert or update records that :func:`~koa_middleware.records.validate_record` passed.

        For the package's own callers, which validate a record once where it
        comes in (an archive's answer, a registration) and pass it inward; use
        :meth:`add` for anything else. The archive's lifecycle fields
        (``published_at``, ``retracted_at``, ``retract_reason``) are kept beside
        the records (:meth:`apply_lifecycle`), so records keep their shape.

        Parameters
        ----------
        records : list of dict
            Validated, normalized records (with the local required fields).
        alter : bool
            Add columns that the records bring and the table lacks.

        Returns
        -------
        list of dict
            ``records``, as stored.

        Raises
        ------
        InvalidRecordError
            If two records claim one file name; then nothing is written.
        """
        return self._store_runs(_runs_of_same_keys(records), alter)

    def _store_runs(self, runs: list[RecordRun], alter: bool) -> list[dict]:
        """Store runs of validated records with the same fields; return the records as stored."""
        lifecycle: dict[str, dict] = {}
        if any(name in run.fields for run in runs for name in LIFECYCLE_FIELDS):
            runs = [split_run_lifecycle(run, lifecycle) for run in runs]
        records = list(chain.from_iterable(run.records for run in runs))
        if records:
            with self.write_transaction():
                self._add_missing_columns([run.records for run in runs], alter)
                try:
                    with indexes_built_after(self.conn, self.table_name, len(records)):
                        for run in runs:
                            self._upsert(run)
                except sqlite3.IntegrityError as exc:
                    raise InvalidRecordError(
                        f"Could not store the records: {exc}. Each calibration file name may "
                        "belong to one calibration id only; rename the file or reuse the id."
                    ) from exc
                if lifecycle:
                    self.apply_lifecycle(lifecycle)
        return records

    def _upsert(self, run: RecordRun) -> None:
        keys = run.fields
        names = ", ".join(quote_identifier(k) for k in keys)
        marks = ", ".join("?" for _ in keys)
        updates = ", ".join(
            f"{quote_identifier(k)} = excluded.{quote_identifier(k)}" for k in keys if k != "id"
        )
        sql = f"INSERT INTO {self._quoted_table} ({names}) VALUES ({marks}) ON CONFLICT(id) DO "
        sql += f"UPDATE SET {updates}" if updates else "NOTHING"
        # One prepared statement for the run, given its rows as they were checked, or rows
        # read from its columns or from the dicts.
        if run.rows is not None:
            rows = run.rows
        elif run.columns is not None:
            rows = zip(*run.columns, strict=True)
        elif len(keys) > 1:
            rows = map(itemgetter(*keys), run.records)
        else:
            rows = ((record[keys[0]],) for record in run.records)
        self.conn.executemany(sql, rows)

    def delete(self, cal_id: str) -> bool:
        """Delete the record with this id; return True if there was one.

        Its publication time (kept when an archive published it) goes too, so
        that a sync sees the record is missing here and brings it back.
        """
        cal_id = validate_cal_id(cal_id)
        with self.write_transaction():
            cursor = self.conn.execute(f"DELETE FROM {self._quoted_table} WHERE id = ?", (cal_id,))
            self.conn.execute(f'DELETE FROM "{PUBLISHED_TABLE}" WHERE id = ?', (cal_id,))
        return cursor.rowcount > 0

    def _reset(self, confirm: bool = False) -> None:
        """Delete every record (not the files). Refuses unless ``confirm=True``."""
        if not confirm:
            raise ValueError("_reset() deletes every record; call _reset(confirm=True) to do so.")
        with self.write_transaction():
            self.conn.execute(f"DELETE FROM {self._quoted_table}")
            self.conn.execute(f'DELETE FROM "{META_TABLE}"')
            self.conn.execute(f'DELETE FROM "{PUBLISHED_TABLE}"')

    def __len__(self) -> int:
        return self.conn.execute(f"SELECT COUNT(*) FROM {self._quoted_table}").fetchone()[0]

    def __bool__(self) -> bool:
        # Whether any record is here, without counting a large table.
        sql = f"SELECT EXISTS (SELECT 1 FROM {self._quoted_table})"
        return bool(self.conn.execute(sql).fetchone()[0])

    def count_published(self) -> int:
        """Return how many records here an archive published (it sent their ``published_at``).

        Records registered here and not pushed yet are left out, so a sync can
        compare this number with the archive's to see whether any of its
        records is missing here.

        Examples
        --------
        >>> db.count_published()  # doctest: +SKIP
        2014
        """
        sql = f'SELECT COUNT(*) FROM {self._quoted_table} JOIN "{PUBLISHED_TABLE}" USING (id)'
        with self._lock:
            return self.conn.execute(sql).fetchone()[0]

    def _deletion_triggers(self) -> dict[str, str]:
        """The name of each trigger that counts deletions, and the table it watches."""
        watched = (self.table_name, PUBLISHED_TABLE)
        return {f"tr_{table}_deleted": table for table in watched}

    def change_mark(self) -> str:
        """A short string that changes whenever a record or a publication time is added or deleted.

        Cheap at any size (no counting): the largest rowid of the records and
        of the publication times, which grows with each row added, and the
        number of rows deleted from each, which triggers keep in the database.
        A record changed in place (same id) leaves it as it was.

        Examples
        --------
        >>> db = LocalCalibrationDB(":memory:", "hispec")
        >>> before = db.change_mark()
        >>> _ = db.add({"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427", "filename": "d.fits",
        ...             "cal_type": "dark", "datetime_obs": "2024-01-01"})
        >>> db.change_mark() != before
        True
        """
        tables = tuple(self._deletion_triggers().values())
        parts = [f"SELECT MAX(rowid) FROM {quote_identifier(table)}" for table in tables]
        keys = ", ".join("?" * len(tables))
        sql = f'SELECT key, value FROM "{META_TABLE}" WHERE key IN ({keys})'
        with self._lock:
            highest = [self.conn.execute(part).fetchone()[0] for part in parts]
            deleted = dict(self.conn.execute(sql, [f"deletions {t}" for t in tables]).fetchall())
        return " ".join(
            f"{top or 0}-{deleted.get(f'deletions {t}', 0)}"
            for top, t in zip(highest, tables, strict=True)
        )

    @contextmanager
    def larger_page_cache(self, mebibytes: int) -> Iterator[None]:
        """Let SQLite's page cache grow to ``mebibytes`` for the enclosed block (a large sync).

        Inserting random ids into the indexes of a large table touches most of
        their pages in each batch; a cache that holds them spares reading them
        again. The former size is set back after the block.
        """
        with self._lock:
            former = self.conn.execute("PRAGMA cache_size").fetchone()[0]
            self.conn.execute(f"PRAGMA cache_size = {-int(mebibytes) * 1024}")
        try:
            yield
        finally:
            with self._lock:
                self.conn.execute(f"PRAGMA cache_size = {int(former)}")

    def release_memory(self) -> None:
        """Give back the memory of SQLite's page cache (``PRAGMA shrink_memory``).

        A bulk load (a sync) fills that cache with pages nobody reads soon;
        calling this after each batch keeps the process small.

        Examples
        --------
        >>> LocalCalibrationDB(":memory:", "hispec").release_memory()
        """
        with self._lock:
            self.conn.execute("PRAGMA shrink_memory")

    def close(self) -> None:
        """Close the connection. Calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self.conn.close()


def _connect_memory(uri: str, timeout: float) -> sqlite3.Connection:
    """Open a new database in memory that other connections of this process can open by ``uri``.

    A plain ``':memory:'`` database is private to its connection; this one is
    SQLite's shared cache in memory, named by ``uri``, and lives while any
    connection to it is open.
    """
    conn = sqlite3.connect(
        uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return conn


def _runs_of_same_keys(records: list[dict]) -> list[RecordRun]:
    """Split records into consecutive runs with the same fields (one executemany each).

    Runs keep the records' order, so rowids follow the order they were given in.
    """
    runs = (list(run) for _, run in groupby(records, key=dict.keys))
    return [RecordRun(run, tuple(run[0]), None) for run in runs]


def _with_last_updated(run: RecordRun, stamp: str) -> RecordRun:
    """``run`` with ``stamp`` as the ``last_updated`` of its records that have none.

    The records of a run share their fields, so they still do after this.
    """
    if "last_updated" in run.fields:
        index = run.fields.index("last_updated")
        values = run.columns[index] if run.columns is not None else None
        if values is not None and all(values):
            return run
    for record in run.records:
        if not record.get("last_updated"):
            record["last_updated"] = stamp
    return RecordRun(run.records, tuple(run.records[0]), None)

"""The archive catalog: records, per-instrument ``seq`` counters and stored-file entries.

SQLAlchemy 2 Core over SQLite (default ``DIR/archive.db``) or PostgreSQL
(``postgresql://`` URLs, through psycopg 3). Every write of an instrument's
records runs in one transaction that first locks that instrument's counter
row (``SELECT ... FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite,
which serializes all writers), so ``seq`` numbers become visible in the order
they are handed out and a reader following ``changes`` never skips one.

Examples
--------
>>> catalog = Catalog.open("/tmp/archive", instruments=["hispec"])  # doctest: +SKIP
>>> catalog.add("hispec", [record])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import ConfigurationError
from ..records import utc_now
from .additions import check_file_against_record, prepare_additions, write_additions
from .engine import catalog_url, make_engine
from .filters import query_statement
from .problems import Conflict
from .retractions import write_lifecycle
from .schema import files, lifecycle_events, metadata, records, row_to_record, seq_counters
from .upgrade import upgrade_catalog

logger = logging.getLogger(__name__)

__all__ = ["Catalog", "StoredFile", "catalog_url", "make_engine", "row_to_record"]

#: Lifecycle events of one record read at most (a record retracted and made live
#: again more often than this shows its first ones).
_MAX_EVENTS = 1000

# Statements run on every download or lookup by id, built once (only parameters change).
_FILE_ENTRY = sa.select(files.c.md5, files.c.size).where(
    files.c.instrument == sa.bindparam("instrument"), files.c.id == sa.bindparam("id")
)
_RECORD_BY_ID = sa.select(records).where(
    records.c.instrument == sa.bindparam("instrument"), records.c.id == sa.bindparam("id")
)


@dataclass(frozen=True)
class StoredFile:
    """A verified file in storage: its MD5 (lower-case hex) and size in bytes."""

    md5: str
    size: int


class Catalog:
    """Records, ``seq`` counters and stored-file entries of an archive.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        From :func:`make_engine`.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    def __repr__(self) -> str:
        return f"Catalog({self.engine.url.render_as_string(hide_password=True)!r})"

    @classmethod
    def open(
        cls, root: str | Path, db_url: str | None = None, instruments: Iterable[str] = ()
    ) -> Catalog:
        """Open (and create if needed) the catalog of the archive in ``root``.

        Parameters
        ----------
        root : str | Path
            The archive folder.
        db_url : str | None
            The catalog URL (``--db``); default SQLite in ``root``.
        instruments : iterable of str
            Instruments whose counters must exist.
        """
        Path(root).mkdir(parents=True, exist_ok=True)
        catalog = cls(make_engine(catalog_url(root, db_url)))
        catalog.create_schema()
        catalog.ensure_instruments(instruments)
        return catalog

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # -- schema --------------------------------------------------------------------
    def create_schema(self) -> None:
        """Create the tables that do not exist yet, and add the columns an older catalog
        lacks (:func:`.upgrade.upgrade_catalog`); safe when several processes start."""
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                break
            except sa.exc.DBAPIError:
                # Another process created the same table between check and create.
                if attempt == 2:
                    raise
                logger.debug("Catalog schema creation raced another process; retrying")
        upgrade_catalog(self.engine)

    def ensure_instruments(self, names: Iterable[str]) -> None:
        """Make sure each instrument has its ``seq`` counter row."""
        for name in names:
            try:
                with self.engine.begin() as conn:
                    conn.execute(seq_counters.insert().values(instrument=name, last_seq=0))
            except sa.exc.IntegrityError:
                pass  # the counter exists already (perhaps created by another process)

    # -- reading -------------------------------------------------------------------
    def query(
        self,
        instrument: str,
        filters: Mapping[str, str],
        limit: int | None = None,
        offset: int | None = None,
        include_seq: bool = True,
        include_retracted: bool = False,
    ) -> list[dict[str, Any]]:
        """Return the records matching ``filters``, ordered by ``last_updated``, then ``id``.

        Parameters
        ----------
        instrument : str
            The instrument.
        filters : Mapping[str, str]
            The v1 query filters (``cal_id``, ``filename``, ``cal_type``, ``origin``,
            ``date_time_start``/``date_time_end``, ``last_updated_start``/``_end``,
            ``cal_version_min``/``_max``) and any other column as equality.
        limit, offset : int | None
            Paging.
        include_seq : bool
            Include ``seq`` in each record (v2).
        include_retracted : bool
            Also return retracted records, each with its lifecycle fields
            (``published_at``, ``retracted_at``, ``retract_reason``).

        Raises
        ------
        BadRequest
            If a filter name or value is invalid.
        """
        statement = query_statement(
            instrument, filters, self.is_postgres, limit, offset, include_retracted
        )
        with self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [row_to_record(row, include_seq, include_retracted) for row in rows]

    def get(self, instrument: str, cal_id: str) -> dict[str, Any] | None:
        """Return the record with id ``cal_id`` (retracted or not, with its lifecycle
        fields), or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(_RECORD_BY_ID, {"instrument": instrument, "id": cal_id})
                .mappings()
                .first()
            )
        return None if row is None else row_to_record(row, True, lifecycle=True)

    def last_updated(self, instrument: str) -> str | None:
        """Return the newest ``last_updated`` of the instrument's records, or None."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.max(records.c.last_updated)).where(
                    records.c.instrument == instrument
                )
            ).scalar()

    def changes(
        self, instrument: str, since: int, limit: int
    ) -> tuple[list[dict[str, Any]], int, bool]:
        """Return ``(records, next, more)``: the records with ``seq > since``, in ``seq`` order.

        Retracted records are in it, every record with its lifecycle fields: a
        retraction gives a record a new ``seq``, so a follower learns of it.

        Examples
        --------
        >>> records, next_seq, more = catalog.changes("hispec", 0, 1000)  # doctest: +SKIP
        """
        statement = (
            sa.select(records)
            .where(records.c.instrument == instrument, records.c.seq > since)
            .order_by(records.c.seq)
            .limit(limit + 1)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        more = len(rows) > limit
        page = [row_to_record(row, True, lifecycle=True) for row in rows[:limit]]
        return page, (page[-1]["seq"] if page else since), more

    def file(self, instrument: str, cal_id: str) -> StoredFile | None:
        """Return the stored file entry of ``cal_id``, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(_FILE_ENTRY, {"instrument": instrument, "id": cal_id}).first()
        return None if row is None else StoredFile(row.md5, row.size)

    # -- writing -------------------------------------------------------------------
    def enter_file(
        self,
        instrument: str,
        cal_id: str,
        stored: StoredFile,
        place: Callable[[], bool] | None = None,
    ) -> tuple[StoredFile | None, bool]:
        """Make a verified file the one of ``cal_id``, checked against its record.

        Runs under the instrument's write lock, the lock ``add`` holds, so a record
        and a file of one id never pass their checks at the same time: whichever
        comes second is checked against the first.

        Parameters
        ----------
        instrument, cal_id : str
            Where the file belongs.
        stored : StoredFile
            Its MD5 and size.
        place : callable | None
            Makes the file visible in storage; returns False when storage already
            holds a file for ``cal_id``.

        Returns
        -------
        (entry, placed)
            The file entry in the catalog afterwards (compare it with ``stored``) and
            whether ``place`` placed the file; ``(None, False)`` when storage already
            held a file that the catalog does not list (left by a crash): read it and
            enter that.

        Raises
        ------
        Conflict
            If the record of ``cal_id`` names another ``file_md5`` or ``file_size``.
        """
        with self._writing(instrument) as (conn, _, _):
            found = conn.execute(_FILE_ENTRY, {"instrument": instrument, "id": cal_id}).first()
            if found is not None:
                return StoredFile(found.md5, found.size), False
            record = conn.execute(_RECORD_BY_ID, {"instrument": instrument, "id": cal_id}).first()
            if record is not None:
                check_file_against_record(cal_id, stored, record.file_md5, record.file_size)
            placed = place() if place is not None else False
            if place is not None and not placed:
                return None, False
            conn.execute(
                files.insert().values(
                    instrument=instrument,
                    id=cal_id,
                    md5=stored.md5,
                    size=stored.size,
                    stored_at=utc_now(),
                )
            )
        return stored, placed

    def add(
        self,
        instrument: str,
        batch: Sequence[dict[str, Any]],
        version_family: Sequence[str] | None = None,
    ) -> list[str]:
        """Upsert validated records by id, all or nothing; return their ids.

        Each inserted or changed record gets the next ``seq`` and a fresh
        ``last_updated``; a record identical to the stored one is left as it is.
        The batch is checked first (:func:`.additions.prepare_additions`), then
        written (:func:`.additions.write_additions`), in one transaction.

        Parameters
        ----------
        instrument : str
            The instrument.
        batch : sequence of dict
            Records already checked by ``records.validate_record`` (no server fields).
        version_family : sequence of str | None
            When given, a record without ``cal_version`` gets the next version of
            its family: the records with the same ``cal_type``, ``origin`` and values
            of these columns. It is allocated under the write lock, so concurrent
            publishers never hand out one version twice. The dicts are updated in place.

        Raises
        ------
        BadRequest
            If a column name differs only by case from another of the instrument's,
            or the instrument would have more than ``MAX_COLUMNS_PER_INSTRUMENT``.
        Conflict
            If a file name belongs to another record, or a record's ``file_md5`` or
            ``file_size`` disagrees with the stored file. Nothing is changed.
        """
        with self._writing(instrument) as (conn, last_seq, last_stamp):
            plan = prepare_additions(conn, instrument, batch, version_family, self.is_postgres)
            write_additions(conn, instrument, plan, last_seq, last_stamp)
        return [record["id"] for record in batch]

    def set_lifecycle(self, instrument: str, ids: Sequence[str], reason: str | None) -> str:
        """Retract records (``reason`` given) or make them live again (None), all or none.

        Runs under the instrument's write lock, the one ``add`` holds: each record
        gets the next ``seq`` and a new ``last_updated``, so the changes feed and
        clients following ``last_updated`` see the change. See
        :func:`.retractions.write_lifecycle`.

        Parameters
        ----------
        instrument : str
            The instrument.
        ids : sequence of str
            Normalized calibration ids, without repeats.
        reason : str | None
            Why (a retraction); None makes the records live again.

        Returns
        -------
        str
            The time of the change (the records' ``last_updated``).

        Raises
        ------
        NotFound
            If an id is not a record of the instrument; nothing is changed then.

        Examples
        --------
        >>> catalog.set_lifecycle("hispec", [cal_id], "hot pixels")  # doctest: +SKIP
        '2026-03-01T12:00:00.000'
        """
        with self._writing(instrument) as (conn, last_seq, last_stamp):
            return write_lifecycle(conn, instrument, ids, reason, last_seq, last_stamp)

    @contextmanager
    def _writing(self, instrument: str) -> Iterator[tuple[Connection, int, str | None]]:
        """Open a write transaction holding the instrument's counter row lock."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(koa_write=True)
                with conn.begin():
                    statement = sa.select(
                        seq_counters.c.last_seq, seq_counters.c.last_updated
                    ).where(seq_counters.c.instrument == instrument)
                    if self.is_postgres:
                        statement = statement.with_for_update()
                    row = conn.execute(statement).first()
                    if row is None:
                        raise ConfigurationError(
                            f"Instrument {instrument!r} has no seq counter; restart the server."
                        )
                    yield conn, row.last_seq, row.last_updated
        except sa.exc.IntegrityError as exc:
            # Rolled back: e.g. two records of one batch swapping file names.
            raise Conflict(
                "The records conflict with stored ones (a file name or id is already taken); "
                "nothing was changed."
            ) from exc

    # -- a record's life -------------------------------------------------------------
    def lifecycle_events(self, instrument: str, cal_id: str) -> list[dict[str, Any]]:
        """Every retraction and making live again of a record, oldest first.

        Returns
        -------
        list of dict
            ``{"seq", "kind", "at", "reason"}``; ``kind`` is ``retracted`` or
            ``unretracted`` (``reason`` None). Empty for changes made before the
            catalog kept them.
        """
        statement = (
            sa.select(
                lifecycle_events.c.seq,
                lifecycle_events.c.kind,
                lifecycle_events.c.at,
                lifecycle_events.c.reason,
            )
            .where(lifecycle_events.c.instrument == instrument, lifecycle_events.c.id == cal_id)
            .order_by(lifecycle_events.c.seq)
            .limit(_MAX_EVENTS)
        )
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(statement).mappings()]

    def lifecycle_between(
        self, instrument: str, since: int, until: int, limit: int
    ) -> list[dict[str, Any]]:
        """The retractions and makings live again with ``since < seq <= until``, by ``seq``.

        Returns
        -------
        list of dict
            ``{"id", "seq", "kind", "at", "reason"}``, at most ``limit``.
        """
        statement = (
            sa.select(
                lifecycle_events.c.id,
                lifecycle_events.c.seq,
                lifecycle_events.c.kind,
                lifecycle_events.c.at,
                lifecycle_events.c.reason,
            )
            .where(
                lifecycle_events.c.instrument == instrument,
                lifecycle_events.c.seq > since,
                lifecycle_events.c.seq <= until,
            )
            .order_by(lifecycle_events.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(statement).mappings()]

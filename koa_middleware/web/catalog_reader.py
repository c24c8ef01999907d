"""The pages' reader over the archive's catalog (SQLAlchemy Core, SQLite or PostgreSQL).

Examples
--------
>>> reader = CatalogReader(catalog, ["hispec"])  # doctest: +SKIP
>>> reader.count("hispec", BrowseQuery())  # doctest: +SKIP
2014
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import sqlalchemy as sa

from ..archive.catalog import Catalog
from ..archive.columns import extra_column_names
from ..archive.filters import conditions
from ..archive.problems import BadRequest
from ..archive.retractions import check_ids, check_reason
from ..archive.schema import RECORD_COLUMNS, record_columns, records, row_to_record, seq_counters
from ..archive.storage_interface import FileStorage
from .catalog_timeline import catalog_bins, catalog_lanes, catalog_marks
from .memo import VersionedMemo, count_from_type_counts, query_key
from .reader import (
    ID_BATCH,
    BadQuery,
    BrowseQuery,
    ChangesPage,
    HistoryEvent,
    RecordPage,
    TypeCount,
    encode_key,
    family_columns,
    history_with_events,
)
from .timeline_data import BinCount, LaneCount, Mark

logger = logging.getLogger(__name__)

__all__ = ["CatalogReader"]


class CatalogReader:
    """A :class:`~koa_middleware.web.reader.CalibrationReader` over an archive's catalog.

    Parameters
    ----------
    catalog : Catalog
        The open catalog.
    instruments : sequence of str
        The instruments the archive serves.
    api_prefix : str
        Where the archive's API lives, for download links.
    protocol : int
        The archive's protocol: 2 links the raw-file route (Range works), 1 the zip.
    storage : FileStorage | None
        The archive's file store, whose files' headers the record page shows; None:
        no file is read.
    """

    has_changes = True
    writes_lifecycle = True

    def __init__(
        self,
        catalog: Catalog,
        instruments: Sequence[str],
        api_prefix: str = "/api/calibrations",
        protocol: int = 2,
        storage: FileStorage | None = None,
    ):
        self.catalog = catalog
        self.storage = storage
        self._instruments = list(instruments)
        self.api_prefix = api_prefix
        self.protocol = protocol
        self._memo = VersionedMemo()

    def _version(self, instrument: str) -> int | None:
        """The instrument's ``seq`` counter: every change of its records moves it."""
        statement = sa.select(seq_counters.c.last_seq).where(
            seq_counters.c.instrument == instrument
        )
        with self.catalog.engine.connect() as conn:
            return conn.execute(statement).scalar()

    def instruments(self) -> list[str]:
        """The instruments the archive serves."""
        return list(self._instruments)

    def _rows(self, statement: sa.Select) -> list[dict[str, Any]]:
        with self.catalog.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [row_to_record(row, True, lifecycle=True) for row in rows]

    def counts(self, instrument: str) -> list[TypeCount]:
        """Records per ``cal_type`` and origin, live and retracted."""
        # A whole-table scan: kept until the next change (web/memo.py).
        return self._memo.get(
            self._version(instrument), ("counts", instrument), lambda: self._counts(instrument)
        )

    def _counts(self, instrument: str) -> list[TypeCount]:
        retracted = sa.func.sum(sa.case((records.c.retracted_at.is_not(None), 1), else_=0))
        statement = (
            sa.select(records.c.cal_type, records.c.origin, sa.func.count(), retracted)
            .where(records.c.instrument == instrument)
            .group_by(records.c.cal_type, records.c.origin)
            .order_by(records.c.cal_type, records.c.origin)
        )
        with self.catalog.engine.connect() as conn:
            rows = conn.execute(statement).all()
        return [TypeCount(t, o, int(n) - int(r or 0), int(r or 0)) for t, o, n, r in rows]

    def newest(self, instrument: str) -> list[dict[str, Any]]:
        """The newest live record of each ``cal_type``."""
        # Each type sorts its newest times by id too: kept until the next change.
        return self._memo.get(
            self._version(instrument), ("newest", instrument), lambda: self._newest(instrument)
        )

    def _newest(self, instrument: str) -> list[dict[str, Any]]:
        live = sa.and_(records.c.instrument == instrument, records.c.retracted_at.is_(None))
        # The types with live records are in the counts already (kept, web/memo.py).
        types = sorted({c.cal_type for c in self.counts(instrument) if c.live})
        found = []
        for cal_type in types:
            of_type = sa.and_(live, records.c.cal_type == cal_type)
            # The newest time walks the (instrument, cal_type, datetime_obs) index from its
            # end (PostgreSQL would otherwise sort every record of the type for the id).
            with self.catalog.engine.connect() as conn:
                newest = conn.execute(
                    sa.select(records.c.datetime_obs)
                    .where(of_type)
                    .order_by(records.c.datetime_obs.desc())
                    .limit(1)
                ).scalar()
            # Its records (few) picked by id here: an ORDER BY id would lead SQLite to
            # walk the primary key instead.
            at_newest = self._rows(
                sa.select(records).where(of_type, records.c.datetime_obs == newest)
            )
            found.extend(sorted(at_newest, key=lambda record: record["id"])[-1:])
        return found

    def time_span(self, instrument: str) -> tuple[str, str] | None:
        """Oldest and newest ``datetime_obs`` of live records."""
        # Each end walks the (instrument, datetime_obs) index to its first live record,
        # where MIN/MAX with the retraction filter would read every row.
        live = sa.select(records.c.datetime_obs).where(
            records.c.instrument == instrument, records.c.retracted_at.is_(None)
        )
        with self.catalog.engine.connect() as conn:
            low = conn.execute(live.order_by(records.c.datetime_obs).limit(1)).scalar()
            high = conn.execute(live.order_by(records.c.datetime_obs.desc()).limit(1)).scalar()
        return None if low is None else (low, high)

    def nights(self, instrument: str, start: str, end: str) -> list[tuple[str, str, int]]:
        """``(night, cal_type, records)`` of live records between ``start`` and ``end``."""
        night = sa.func.substr(records.c.datetime_obs, 1, 10)
        statement = (
            sa.select(night, records.c.cal_type, sa.func.count())
            .where(
                records.c.instrument == instrument,
                records.c.retracted_at.is_(None),
                records.c.datetime_obs >= start,
                records.c.datetime_obs <= end,
            )
            .group_by(night, records.c.cal_type)
        )
        with self.catalog.engine.connect() as conn:
            return [(n, t, int(c)) for n, t, c in conn.execute(statement).all()]

    def _where(self, instrument: str, query: BrowseQuery) -> list[sa.ColumnElement[bool]]:
        try:
            found = conditions(query.filters, self.catalog.is_postgres)
        except BadRequest as exc:
            raise BadQuery(str(exc)) from None
        found.append(records.c.instrument == instrument)
        if not query.include_retracted:
            found.append(records.c.retracted_at.is_(None))
        return found

    def count(self, instrument: str, query: BrowseQuery) -> int:
        """How many records match ``query``."""
        shared = count_from_type_counts(self.counts(instrument), query)
        if shared is not None:
            return shared
        key = ("count", instrument, tuple(sorted(query.filters.items())), query.include_retracted)
        return self._memo.get(
            self._version(instrument), key, lambda: self._count(instrument, query)
        )

    def _count(self, instrument: str, query: BrowseQuery) -> int:
        statement = sa.select(sa.func.count()).select_from(records)
        statement = statement.where(*self._where(instrument, query))
        with self.catalog.engine.connect() as conn:
            return int(conn.execute(statement).scalar() or 0)

    def page(
        self, instrument: str, query: BrowseQuery, after: tuple[str, str] | None, limit: int
    ) -> RecordPage:
        """The ``limit`` records after the key ``after``, in the query's order."""
        column = records.c[query.sort]
        statement = sa.select(records).where(*self._where(instrument, query))
        if after is not None:
            key = sa.tuple_(column, records.c.id)
            bound = sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
            statement = statement.where(key < bound if query.descending else key > bound)
        if query.descending:
            statement = statement.order_by(column.desc(), records.c.id.desc())
        else:
            statement = statement.order_by(column, records.c.id)
        found = self._rows(statement.limit(limit + 1))
        more = len(found) > limit
        found = found[:limit]
        last = found[-1] if found and more else None
        return RecordPage(found, encode_key(last[query.sort], last["id"]) if last else None)

    def record(self, instrument: str, cal_id: str) -> dict[str, Any] | None:
        """The record with this id, or None."""
        return self.catalog.get(instrument, cal_id)

    def family(self, instrument: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The record's version family, by version."""
        wanted = {
            name: str(record[name])
            for name in family_columns(instrument, str(record.get("cal_type")))
            if record.get(name) is not None
        }
        try:
            where = conditions(wanted, self.catalog.is_postgres)
        except BadRequest:  # a value no filter can express: the record is its own family
            return [dict(record)]
        statement = (
            sa.select(records)
            .where(records.c.instrument == instrument, *where)
            .order_by(records.c.cal_version, records.c.id)
            .limit(1000)
        )
        return self._rows(statement)

    def history(self, instrument: str, record: Mapping[str, Any]) -> list[HistoryEvent]:
        """Published, every retraction (with its reason) and making live again, last change."""
        events = self.catalog.lifecycle_events(instrument, str(record["id"]))
        return history_with_events(record, record.get("published_at"), events)

    def changes(self, instrument: str, since: int, limit: int) -> ChangesPage:
        """The records changed after ``since``, in ``seq`` order, with their lifecycle steps.

        A record shows once, at its latest ``seq``; a retraction or making live again
        that a later change of the same record superseded is still listed, at its own
        ``seq``, from ``lifecycle_events``. Each such step carries ``change``:
        ``retracted`` or ``unretracted``.
        """
        found, next_seq, more = self.catalog.changes(instrument, since, limit)
        events = self.catalog.lifecycle_between(instrument, since, next_seq, limit)
        current = {record["seq"]: record for record in found}
        by_id = {record["id"]: record for record in found}
        missing = {e["id"] for e in events if e["seq"] not in current} - set(by_id)
        if missing:
            statement = sa.select(records).where(
                records.c.instrument == instrument, records.c.id.in_(sorted(missing))
            )
            by_id.update((r["id"], r) for r in self._rows(statement))
        for event in events:
            if event["seq"] in current:
                current[event["seq"]]["change"] = event["kind"]
            elif event["id"] in by_id:
                found.append(_superseded(by_id[event["id"]], event))
        found.sort(key=lambda record: record["seq"])
        return ChangesPage(found, next_seq, more)

    def download_url(self, instrument: str, record: Mapping[str, Any]) -> str | None:
        """The raw-file route (v2) or the zip (v1) of the record's file, when it is stored."""
        if self.catalog.file(instrument, str(record["id"])) is None:
            return None
        if self.protocol == 1:
            return f"{self.api_prefix}/{instrument}/download?cal_id={record['id']}"
        return f"{self.api_prefix}/{instrument}/files/{record['id']}"

    def records_by_id(self, instrument: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The records with these ids by id, ``ID_BATCH`` ids per statement."""
        found: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), ID_BATCH):
            statement = sa.select(records).where(
                records.c.instrument == instrument,
                records.c.id.in_(wanted[start : start + ID_BATCH]),
            )
            found.update((r["id"], r) for r in self._rows(statement))
        return found

    def live_at_times(
        self, instrument: str, cal_type: str, times: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The live records of ``cal_type`` at these times, ``ID_BATCH`` times per statement."""
        found: list[dict[str, Any]] = []
        wanted = list(dict.fromkeys(times))
        for start in range(0, len(wanted), ID_BATCH):
            statement = sa.select(records).where(
                records.c.instrument == instrument,
                records.c.cal_type == cal_type,
                records.c.datetime_obs.in_(wanted[start : start + ID_BATCH]),
                records.c.retracted_at.is_(None),
            )
            found.extend(self._rows(statement))
        return found

    def open_file(
        self,
        instrument: str,
        record: Mapping[str, Any],
        start: int = 0,
        end: int | None = None,
        for_download: bool = False,
    ) -> tuple[BinaryIO, int] | None:
        """The stored file (checked when it was stored) at ``start``, and its size."""
        stored = self.catalog.file(instrument, str(record["id"]))
        if stored is None or self.storage is None:
            return None
        stop = stored.size if end is None else min(end, stored.size)
        try:
            handle = self.storage.open(instrument, str(record["id"]), min(start, stop), stop)
        except FileNotFoundError:
            logger.warning("The catalog lists %s/%s but storage has no file", instrument,
                           record["id"])  # fmt: skip
            return None
        return handle, stored.size

    def set_lifecycle(self, instrument: str, ids: list[str], reason: str | None) -> str:
        """Retract or make live again through the catalog, checked as the API's routes do.

        Raises
        ------
        BadQuery
            If an id or the reason is one the API would refuse.
        """
        try:
            checked = check_ids(list(ids))
            text = check_reason(reason) if reason is not None else None
        except BadRequest as exc:
            raise BadQuery(str(exc)) from None
        return self.catalog.set_lifecycle(instrument, checked, text)

    def column_names(self, instrument: str) -> list[str]:
        """The instrument's columns from the catalog's column registry (or its records)."""
        statement = sa.select(record_columns.c.name).where(
            record_columns.c.instrument == instrument
        )
        with self.catalog.engine.connect() as conn:
            names = list(conn.execute(statement).scalars())
            if not names:  # a catalog older than its registry: the records' own names
                names = [*RECORD_COLUMNS, *extra_column_names(conn, instrument)]
        return sorted(set(names), key=str.lower)

    def timeline_lanes(
        self, instrument: str, query: BrowseQuery, facets: Sequence[str]
    ) -> list[LaneCount]:
        """The records of ``query`` per facet values and ``cal_type``."""
        # Whole-table groupings: kept until the source changes (web/memo.py).
        return self._memo.get(
            self._version(instrument),
            ("lanes", instrument, query_key(query), tuple(facets)),
            lambda: self._timeline_lanes(instrument, query, facets),
        )

    def _timeline_lanes(
        self, instrument: str, query: BrowseQuery, facets: Sequence[str]
    ) -> list[LaneCount]:
        return catalog_lanes(self.catalog, self._where(instrument, query), facets)

    def timeline_marks(
        self, instrument: str, query: BrowseQuery, facets: Sequence[str], limit: int
    ) -> list[Mark]:
        """The first ``limit`` records of ``query`` by time."""
        return catalog_marks(self.catalog, self._where(instrument, query), facets, limit)

    def timeline_bins(
        self, instrument: str, query: BrowseQuery, facets: Sequence[str], start: float, width: float
    ) -> list[BinCount]:
        """Records of ``query`` per lane and time bin."""
        return self._memo.get(
            self._version(instrument),
            ("bins", instrument, query_key(query), tuple(facets), start, width),
            lambda: self._timeline_bins(instrument, query, facets, start, width),
        )

    def _timeline_bins(
        self, instrument: str, query: BrowseQuery, facets: Sequence[str], start: float, width: float
    ) -> list[BinCount]:
        where = self._where(instrument, query)
        return catalog_bins(self.catalog, where, facets, start, width)


def _superseded(record: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    """A lifecycle step of ``record`` that a later change superseded, as a changes row."""
    retracted = event["kind"] == "retracted"
    return {
        **record,
        "seq": event["seq"],
        "last_updated": event["at"],
        "retracted_at": event["at"] if retracted else None,
        "retract_reason": event["reason"] if retracted else None,
        "change": event["kind"],
    }

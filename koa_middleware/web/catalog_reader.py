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
from typing import Any

import sqlalchemy as sa

from ..archive.catalog import Catalog
from ..archive.filters import conditions
from ..archive.problems import BadRequest
from ..archive.schema import records, row_to_record, seq_counters
from .memo import VersionedMemo, count_from_type_counts
from .reader import (
    BadQuery,
    BrowseQuery,
    ChangesPage,
    HistoryEvent,
    RecordPage,
    TypeCount,
    encode_key,
    family_columns,
    history_of,
)

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
    """

    has_changes = True

    def __init__(
        self,
        catalog: Catalog,
        instruments: Sequence[str],
        api_prefix: str = "/api/calibrations",
        protocol: int = 2,
    ):
        self.catalog = catalog
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
        """Published, retracted (with the reason) and last changed, from the catalog."""
        return history_of(record, record.get("published_at"))

    def changes(self, instrument: str, since: int, limit: int) -> ChangesPage:
        """The records changed after ``since``, in ``seq`` order."""
        found, next_seq, more = self.catalog.changes(instrument, since, limit)
        return ChangesPage(found, next_seq, more)

    def download_url(self, instrument: str, record: Mapping[str, Any]) -> str | None:
        """The raw-file route (v2) or the zip (v1) of the record's file, when it is stored."""
        if self.catalog.file(instrument, str(record["id"])) is None:
            return None
        if self.protocol == 1:
            return f"{self.api_prefix}/{instrument}/download?cal_id={record['id']}"
        return f"{self.api_prefix}/{instrument}/files/{record['id']}"

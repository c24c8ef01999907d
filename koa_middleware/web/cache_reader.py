"""The pages' reader over local caches (each one instrument's SQLite database).

The records of the read-only caches are in the cache's database already
(:meth:`~koa_middleware.cache.local_cache.LocalCache.refresh` brings them in), with
the retractions any of them knows, so reading the database reads them all. A local
cache keeps no changes ``seq``: :meth:`CacheReader.changes` answers None, and the
page says the feed is the archive's.

Examples
--------
>>> reader = CacheReader({"hispec": store.cache})  # doctest: +SKIP
>>> reader.count("hispec", BrowseQuery())  # doctest: +SKIP
12
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO

from ..bounded_read import FileRefused, open_regular_file
from ..database.local_database import BASE_COLUMNS
from ..database.reading import quote_identifier
from ..errors import InvalidRecordError
from ..records import LOCAL_REQUIRED_FIELDS
from .cache_timeline import CacheSource, cache_bins, cache_lanes, cache_marks
from .column_filters import column_condition

if TYPE_CHECKING:
    from ..cache.local_cache import LocalCache

from .memo import VersionedMemo, count_from_type_counts, query_key
from .reader import (
    ID_BATCH,
    BrowseQuery,
    HistoryEvent,
    RecordPage,
    TypeCount,
    encode_key,
    family_columns,
    history_of,
)
from .timeline_data import BinCount, LaneCount, Mark

logger = logging.getLogger(__name__)

__all__ = ["CacheReader"]

#: Filters of a browse query as SQL on the records table ``t`` (values bound).
_FILTER_SQL = {
    "cal_type": "t.cal_type = ?",
    "origin": "t.origin = ?",
    "date_time_start": "t.datetime_obs >= ?",
    "date_time_end": "t.datetime_obs <= ?",
    "cal_version_min": "t.cal_version >= ?",
    "cal_version_max": "t.cal_version <= ?",
}
_RETRACTIONS_JOIN = 'LEFT JOIN "_koa_retractions" r ON r.id = t.id'
_LIFECYCLE_JOIN = (
    'LEFT JOIN "_koa_retractions" r ON r.id = t.id LEFT JOIN "_koa_published" p ON p.id = t.id'
)
_LIFECYCLE_COLUMNS = (
    "r.retracted_at AS retracted_at, r.reason AS retract_reason, p.published_at AS published_at"
)


class CacheReader:
    """A :class:`~koa_middleware.web.reader.CalibrationReader` over local caches.

    Parameters
    ----------
    caches : Mapping[str, LocalCache]
        Instrument name -> its open cache.
    """

    has_changes = False
    writes_lifecycle = False

    def __init__(self, caches: Mapping[str, LocalCache]):
        self.caches = dict(caches)
        self._memo = VersionedMemo()

    def _version(self, instrument: str) -> tuple[int, int]:
        """What moves when the database changes: by another connection, or by this one."""
        db = self.caches[instrument].db
        with db.lock:
            (data_version,) = db.conn.execute("PRAGMA data_version").fetchone()
            return data_version, db.conn.total_changes

    def instruments(self) -> list[str]:
        """The instruments whose caches are open."""
        return sorted(self.caches)

    def _select(self, instrument: str, sql: str, params: list[Any] | tuple = ()) -> list[tuple]:
        db = self.caches[instrument].db
        with db.lock:  # one connection shared by the server's worker threads
            return db.conn.execute(sql, tuple(params)).fetchall()

    def _records(self, instrument: str, where: str, params: list[Any], tail: str = "") -> list:
        db = self.caches[instrument].db
        sql = (
            f"SELECT t.*, {_LIFECYCLE_COLUMNS} FROM {quote_identifier(db.table_name)} t "  # noqa: S608
            f"{_LIFECYCLE_JOIN} WHERE {where} {tail}"
        )
        with db.lock:
            cursor = db.conn.execute(sql, tuple(params))
            names = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchall()
        return [_record(dict(zip(names, row, strict=True))) for row in rows]

    def _table(self, instrument: str) -> str:
        return quote_identifier(self.caches[instrument].db.table_name)

    def counts(self, instrument: str) -> list[TypeCount]:
        """Records per ``cal_type`` and origin, live and retracted."""
        # A whole-table scan: kept until the database changes (web/memo.py).
        return self._memo.get(
            self._version(instrument), ("counts", instrument), lambda: self._counts(instrument)
        )

    def _counts(self, instrument: str) -> list[TypeCount]:
        rows = self._select(
            instrument,
            "SELECT t.cal_type, COALESCE(t.origin, ''), COUNT(*), COUNT(r.id) "  # noqa: S608
            f"FROM {self._table(instrument)} t {_LIFECYCLE_JOIN} "
            "GROUP BY 1, 2 ORDER BY 1, 2",
        )
        return [TypeCount(t, o, n - r, r) for t, o, n, r in rows]

    def newest(self, instrument: str) -> list[dict[str, Any]]:
        """The newest live record of each ``cal_type``."""
        # Each type sorts its records by time (the cache indexes cal_type and datetime_obs
        # apart): kept until the database changes.
        return self._memo.get(
            self._version(instrument), ("newest", instrument), lambda: self._newest(instrument)
        )

    def _newest(self, instrument: str) -> list[dict[str, Any]]:
        types = self._select(
            instrument,
            f"SELECT DISTINCT cal_type FROM {self._table(instrument)} ORDER BY 1",  # noqa: S608
        )
        found = []
        for (cal_type,) in types:
            found.extend(
                self._records(
                    instrument,
                    "t.cal_type = ? AND r.id IS NULL",
                    [cal_type],
                    "ORDER BY t.datetime_obs DESC, t.id DESC LIMIT 1",
                )
            )
        return found

    def time_span(self, instrument: str) -> tuple[str, str] | None:
        """Oldest and newest ``datetime_obs`` of live records."""
        # Each end walks the datetime_obs index to its first live record.
        ends = []
        for direction in ("ASC", "DESC"):
            found = self._select(
                instrument,
                f"SELECT t.datetime_obs FROM {self._table(instrument)} t "  # noqa: S608
                f"{_LIFECYCLE_JOIN} WHERE r.id IS NULL AND t.datetime_obs IS NOT NULL "
                f"ORDER BY t.datetime_obs {direction} LIMIT 1",
            )
            ends.append(found[0][0] if found else None)
        return None if ends[0] is None else (ends[0], ends[1])

    def nights(self, instrument: str, start: str, end: str) -> list[tuple[str, str, int]]:
        """``(night, cal_type, records)`` of live records between ``start`` and ``end``."""
        rows = self._select(
            instrument,
            "SELECT substr(t.datetime_obs, 1, 10), t.cal_type, COUNT(*) "  # noqa: S608
            f"FROM {self._table(instrument)} t {_LIFECYCLE_JOIN} "
            "WHERE r.id IS NULL AND t.datetime_obs >= ? AND t.datetime_obs <= ? GROUP BY 1, 2",
            [start, end],
        )
        return [(n, t, c) for n, t, c in rows]

    @staticmethod
    def _where(query: BrowseQuery) -> tuple[str, list[Any]]:
        parts, params = ["1 = 1"], []
        for name, value in query.filters.items():
            if name in _FILTER_SQL:
                parts.append(_FILTER_SQL[name])
                params.append(value)
            else:  # a column filter: the name is one of the table's (BrowseQuery.parse)
                sql, values = column_condition(name, value)
                parts.append(sql)
                params.extend(values)
        if not query.include_retracted:
            parts.append("r.id IS NULL")
        return " AND ".join(parts), params

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
        where, params = self._where(query)
        ((found,),) = self._select(
            instrument,
            f"SELECT COUNT(*) FROM {self._table(instrument)} t {_LIFECYCLE_JOIN} "  # noqa: S608
            f"WHERE {where}",
            params,
        )
        return found

    def page(
        self, instrument: str, query: BrowseQuery, after: tuple[str, str] | None, limit: int
    ) -> RecordPage:
        """The ``limit`` records after the key ``after``, in the query's order."""
        where, params = self._where(query)
        # A column may be empty in a local record: sort it as an empty string. The
        # columns every local record holds are sorted bare, so their index serves.
        key = f"t.{quote_identifier(query.sort)}"
        if query.sort not in LOCAL_REQUIRED_FIELDS:
            key = f"COALESCE({key}, '')"
        direction = "DESC" if query.descending else "ASC"
        if after is not None:
            where += f" AND ({key}, t.id) {'<' if query.descending else '>'} (?, ?)"
            params += list(after)
        tail = f"ORDER BY {key} {direction}, t.id {direction} LIMIT {int(limit) + 1}"
        found = self._records(instrument, where, params, tail)
        more = len(found) > limit
        found = found[:limit]
        last = found[-1] if found and more else None
        next_key = encode_key(last.get(query.sort) or "", last["id"]) if last else None
        return RecordPage(found, next_key)

    def record(self, instrument: str, cal_id: str) -> dict[str, Any] | None:
        """The record with this id, or None."""
        found = self._records(instrument, "t.id = ?", [cal_id])
        return found[0] if found else None

    def family(self, instrument: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The record's version family, by version."""
        known = set(self.caches[instrument].db.columns)
        parts, params = [], []
        for name in family_columns(instrument, str(record.get("cal_type"))):
            if name not in known:
                continue
            if record.get(name) is None:
                parts.append(f"t.{quote_identifier(name)} IS NULL")
            else:
                parts.append(f"t.{quote_identifier(name)} = ?")
                params.append(record[name])
        where = " AND ".join(parts) or "t.id = ?"
        if not parts:
            params = [record["id"]]
        return self._records(instrument, where, params, "ORDER BY t.cal_version, t.id LIMIT 1000")

    def history(self, instrument: str, record: Mapping[str, Any]) -> list[HistoryEvent]:
        """Published (when an archive sent it), retracted (with the reason), last changed."""
        return history_of(record, record.get("published_at"))

    def changes(self, instrument: str, since: int, limit: int) -> None:
        """None: a local cache numbers no changes; the feed is the archive's."""
        return None

    def download_url(self, instrument: str, record: Mapping[str, Any]) -> str | None:
        """None: files of a local cache are read where they are (``koa-cal get``)."""
        return None

    def open_file(
        self,
        instrument: str,
        record: Mapping[str, Any],
        start: int = 0,
        end: int | None = None,
        for_download: bool = False,
    ) -> tuple[BinaryIO, int] | None:
        """The cached file of ``record`` at ``start``, and its size; None when not cached.

        Only a file inside the cache (its own folder or a read-only cache's, by the
        record's plain file name) and only a regular file, never through a link.
        ``for_download``: the file :meth:`~koa_middleware.cache.local_cache.LocalCache.locate`
        finds intact (size, MD5 against the record), as ``koa-cal get`` would serve it.
        """
        cache = self.caches[instrument]
        try:
            if for_download:  # checked against its record (once, then remembered)
                where = cache.locate(dict(record))
                if not where.usable:
                    if where.problem:
                        logger.warning("Not serving %s: it %s", where.path, where.problem)
                    return None
                paths = [where.path]
            else:  # only the header is read: no need to hash the whole file first
                name = str(record["filename"])
                paths = [cache.layout.path_for(name)]
                paths += [shared.layout.path_for(name) for shared in cache.readonly.caches]
        except InvalidRecordError:
            return None  # a file name that is not a plain name: never a path
        for path in paths:
            try:
                fd, info = open_regular_file(path)
                break
            except FileNotFoundError:
                continue
            except (FileRefused, OSError) as exc:
                logger.warning("Not reading %s: %s", path, exc)
                return None
        else:
            return None
        handle = os.fdopen(fd, "rb")
        handle.seek(min(start, info.st_size))
        return handle, info.st_size

    def set_lifecycle(self, instrument: str, ids: list[str], reason: str | None) -> str:
        """A local cache does not retract: retractions are made on the archive."""
        raise NotImplementedError(
            "A local cache does not retract calibrations: retract them on the archive "
            "(its pages, or koa-cal retract), then sync."
        )

    def records_by_id(self, instrument: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The records with these ids by id, ``ID_BATCH`` ids per statement."""
        found: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), ID_BATCH):
            batch = wanted[start : start + ID_BATCH]
            where = f"t.id IN ({', '.join('?' for _ in batch)})"
            found.update((r["id"], r) for r in self._records(instrument, where, batch))
        return found

    def live_at_times(
        self, instrument: str, cal_type: str, times: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The live records of ``cal_type`` at these times, ``ID_BATCH`` times per statement."""
        found: list[dict[str, Any]] = []
        wanted = list(dict.fromkeys(times))
        for start in range(0, len(wanted), ID_BATCH):
            batch = wanted[start : start + ID_BATCH]
            where = (
                f"t.cal_type = ? AND t.datetime_obs IN ({', '.join('?' for _ in batch)}) "
                "AND r.id IS NULL"
            )
            found.extend(self._records(instrument, where, [cal_type, *batch]))
        return found

    def explain(
        self, instrument: str, input: Any, selector: Any, as_of: str | None = None
    ) -> dict[str, Any]:
        """What ``selector`` chooses for ``input`` in this cache and why (the store's explain).

        See :meth:`Lifecycle.explain <koa_middleware.cache.lifecycle.Lifecycle.explain>`.
        One explanation runs at a time (the pages' threads share the connection), and
        the view of an ``as_of`` time is closed after it, so that times asked for one
        after another do not keep a connection each.
        """
        cache = self.caches[instrument]
        with cache.db.lock:
            try:
                return cache.lifecycle.explain(input, selector, as_of)
            finally:
                if as_of is not None:
                    cache.lifecycle.release_view(as_of)

    def column_names(self, instrument: str) -> list[str]:
        """The columns of the instrument's table in the cache."""
        db = self.caches[instrument].db
        with db.lock:
            return sorted(db.columns, key=str.lower)

    def _timeline_source(self, instrument: str, query: BrowseQuery) -> CacheSource:
        where, params = self._where(query)
        db = self.caches[instrument].db
        with db.lock:
            columns = frozenset(db.columns)
        from_sql = f"{self._table(instrument)} t {_RETRACTIONS_JOIN}"
        return CacheSource(from_sql, where, params, columns)

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
        source = self._timeline_source(instrument, query)
        return cache_lanes(partial(self._select, instrument), source, facets)

    def timeline_marks(
        self, instrument: str, query: BrowseQuery, facets: Sequence[str], limit: int
    ) -> list[Mark]:
        """The first ``limit`` records of ``query`` by time."""
        source = self._timeline_source(instrument, query)
        return cache_marks(partial(self._select, instrument), source, facets, limit)

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
        source = self._timeline_source(instrument, query)
        return cache_bins(partial(self._select, instrument), source, facets, start, width)


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """A record as the pages show it: its own columns, then its life."""
    record = {
        name: value
        for name, value in row.items()
        if value is not None or name in BASE_COLUMNS or name in ("retracted_at", "retract_reason")
    }
    record.setdefault("retracted_at", None)
    record.setdefault("retract_reason", None)
    return record

"""What the pages read, and the small interface both sources implement.

The pages never touch SQL: they ask a :class:`CalibrationReader`, which the
archive's catalog (:class:`~koa_middleware.web.catalog_reader.CatalogReader`) and a
local cache (:class:`~koa_middleware.web.cache_reader.CacheReader`) both implement.
Browsing uses keyset pagination: a page ends with the sort key of its last row,
and the next page starts after that key, so no page costs a deep ``OFFSET``.

Examples
--------
>>> query = BrowseQuery.parse({"cal_type": "dark", "sort": "datetime_obs", "order": "desc"})
>>> query.api_params()
{'cal_type': 'dark'}
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

from ..errors import KOAError
from ..profiles import DEFAULT_FAMILY, DEFAULT_GAP_NIGHTS, load_profile
from ..records import normalize_version
from ..timestamps import normalize_timestamp
from .column_filters import column_filters

if TYPE_CHECKING:
    from .timeline_data import BinCount, LaneCount, Mark

logger = logging.getLogger(__name__)

__all__ = [
    "SORTABLE",
    "BadQuery",
    "BrowseQuery",
    "CalibrationReader",
    "ChangesPage",
    "HistoryEvent",
    "RecordPage",
    "TypeCount",
    "decode_key",
    "encode_key",
    "family_columns",
    "profile_gap_nights",
]

#: Columns a browse table may be sorted by (each a column of every record).
SORTABLE = ("datetime_obs", "last_updated", "cal_type", "filename", "origin", "cal_version")
#: Ids looked up per statement by ``records_by_id`` (well under SQLite's bound parameters).
ID_BATCH = 500
#: Filters of a browse query, named as the archive API's ``query`` parameters.
FILTERS = (
    "cal_type",
    "origin",
    "date_time_start",
    "date_time_end",
    "cal_version_min",
    "cal_version_max",
)


class BadQuery(KOAError, ValueError):
    """A page's query parameter is not valid; the message names it and what to send."""


@dataclass(frozen=True)
class BrowseQuery:
    """A browse page's filters and order, read from its GET parameters.

    Attributes
    ----------
    filters : dict
        Normalized filter values by API parameter name (see :data:`FILTERS`),
        and equality filters on columns by column name (``spectrograph``).
    include_retracted : bool
        Show retracted records too.
    sort : str
        One of :data:`SORTABLE`.
    descending : bool
        Newest (or last) first.
    """

    filters: dict[str, str] = field(default_factory=dict)
    include_retracted: bool = False
    sort: str = "datetime_obs"
    descending: bool = True

    @classmethod
    def parse(cls, params: Mapping[str, str], columns: Iterable[str] | None = None) -> BrowseQuery:
        """Read the query from GET parameters; empty values are left out.

        Parameters
        ----------
        params : Mapping[str, str]
            The page's GET parameters.
        columns : iterable of str | None
            The source's columns (:meth:`CalibrationReader.column_names`): any other
            parameter named after one is an equality filter on it, as in the API's
            ``query``, and a parameter that names none is refused. None: only
            :data:`FILTERS` are read.

        Raises
        ------
        BadQuery
            If a value cannot be read (a time, a version, a sort column), or a
            parameter names no column.
        """
        filters: dict[str, str] = {}
        for name in FILTERS:
            value = (params.get(name) or "").strip()
            if value:
                filters[name] = _normalize_filter(name, value)
        if columns is not None:
            try:
                by_column = column_filters(params, columns, FILTERS)
            except ValueError as exc:
                raise BadQuery(str(exc)) from None
            for name, value in by_column.items():
                if filters.setdefault(name, value) != value:
                    raise BadQuery(f"{name} is given two different values; keep one.")
        sort = params.get("sort") or "datetime_obs"
        if sort not in SORTABLE:
            raise BadQuery(f"sort must be one of {', '.join(SORTABLE)}, not {sort[:40]!r}.")
        order = params.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise BadQuery(f"order must be 'asc' or 'desc', not {order[:40]!r}.")
        retracted = (params.get("include_retracted") or "").strip().lower()
        return cls(filters, retracted in ("1", "true", "yes", "on"), sort, order == "desc")

    def api_params(self) -> dict[str, str]:
        """The filters as the archive API's ``query`` takes them."""
        params = dict(self.filters)
        if self.include_retracted:
            params["include_retracted"] = "1"
        return params

    def column_filters(self) -> dict[str, str]:
        """The equality filters on columns (those not in :data:`FILTERS`)."""
        return {name: value for name, value in self.filters.items() if name not in FILTERS}

    def params(self) -> dict[str, str]:
        """Every GET parameter of this query (the page's permalink without ``after``)."""
        return {
            **self.api_params(),
            "sort": self.sort,
            "order": "desc" if self.descending else "asc",
        }


def _normalize_filter(name: str, value: str) -> str:
    try:
        if name.startswith("date_time"):
            return normalize_timestamp(value, name)
        if name.startswith("cal_version"):
            return normalize_version(value)
    except (ValueError, OverflowError) as exc:
        raise BadQuery(f"{name}: {exc}") from None
    if name == "origin":
        return value.upper()
    return value


def encode_key(value: Any, cal_id: str) -> str:
    """The ``after`` parameter of the page that follows a row with this sort value and id.

    Examples
    --------
    >>> decode_key(encode_key("2024-01-01T00:00:00.000", "x"))
    ('2024-01-01T00:00:00.000', 'x')
    """
    text = json.dumps([value, cal_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_key(text: str) -> tuple[str, str]:
    """Read an ``after`` parameter back into ``(sort value, id)``.

    Raises
    ------
    BadQuery
        If it is not one this module wrote.
    """
    try:
        padded = text + "=" * (-len(text) % 4)
        value, cal_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise BadQuery("after is not a page key of this site; start from the first page.") from None
    if not isinstance(cal_id, str):
        raise BadQuery("after is not a page key of this site; start from the first page.")
    return ("" if value is None else str(value)), cal_id


@dataclass(frozen=True)
class TypeCount:
    """How many records of one ``cal_type`` and origin, live and retracted."""

    cal_type: str
    origin: str
    live: int
    retracted: int


@dataclass(frozen=True)
class RecordPage:
    """One page of a browse table: its records and the key of the next page (None: last)."""

    records: list[dict[str, Any]]
    next_key: str | None


@dataclass(frozen=True)
class HistoryEvent:
    """One step of a record's life: ``published``, ``retracted``, ``unretracted`` or ``changed``."""

    kind: str
    at: str
    detail: str = ""


@dataclass(frozen=True)
class ChangesPage:
    """A page of the changes feed: records in ``seq`` order, the next ``since``, more or not."""

    records: list[dict[str, Any]]
    next_since: int
    more: bool


@runtime_checkable
class CalibrationReader(Protocol):
    """What the pages read; implemented by the archive's catalog and by a local cache.

    Every record handed out is a dict of its columns, with ``retracted_at`` and
    ``retract_reason`` (None while live) and, where the source numbers its
    changes, ``seq``.
    """

    #: Whether records carry a changes ``seq`` (the archive does, a local cache does not).
    has_changes: bool

    def instruments(self) -> list[str]:
        """The instruments this source serves."""
        ...

    def counts(self, instrument: str) -> list[TypeCount]:
        """Records per ``cal_type`` and origin, sorted by both."""
        ...

    def newest(self, instrument: str) -> list[dict[str, Any]]:
        """The newest live record (by ``datetime_obs``) of each ``cal_type``."""
        ...

    def nights(self, instrument: str, start: str, end: str) -> list[tuple[str, str, int]]:
        """``(night, cal_type, records)`` of live records with ``start <= datetime_obs <= end``.

        ``night`` is the UTC date of ``datetime_obs`` (``YYYY-MM-DD``).
        """
        ...

    def time_span(self, instrument: str) -> tuple[str, str] | None:
        """The oldest and newest ``datetime_obs`` of live records, or None when there are none."""
        ...

    def count(self, instrument: str, query: BrowseQuery) -> int:
        """How many records match ``query``."""
        ...

    def page(
        self, instrument: str, query: BrowseQuery, after: tuple[str, str] | None, limit: int
    ) -> RecordPage:
        """The ``limit`` records that follow the key ``after`` in ``query``'s order."""
        ...

    def record(self, instrument: str, cal_id: str) -> dict[str, Any] | None:
        """The record with this id (retracted or not), or None."""
        ...

    def family(self, instrument: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The records of ``record``'s version family (itself included), by version."""
        ...

    def history(self, instrument: str, record: Mapping[str, Any]) -> list[HistoryEvent]:
        """What is known of the record's life, oldest first."""
        ...

    def changes(self, instrument: str, since: int, limit: int) -> ChangesPage | None:
        """The records changed after ``since``; None when the source keeps no ``seq``."""
        ...

    def download_url(self, instrument: str, record: Mapping[str, Any]) -> str | None:
        """Where the record's file can be downloaded from this site, or None."""
        ...

    # -- the record page: the stored file and the record's life ---------------------

    #: Whether the source can retract records and make them live again (the archive).
    writes_lifecycle: bool

    def open_file(
        self,
        instrument: str,
        record: Mapping[str, Any],
        start: int = 0,
        end: int | None = None,
        for_download: bool = False,
    ) -> tuple[BinaryIO, int] | None:
        """The record's stored file opened at ``start`` (to read up to ``end``), and its size.

        None when the source holds no file for the record. ``for_download``: the
        file is handed out whole, so a source that checks its files does so first.
        The caller closes the handle.
        """
        ...

    def set_lifecycle(self, instrument: str, ids: list[str], reason: str | None) -> str:
        """Retract records (``reason``) or make them live again (None); the change's time.

        Raises
        ------
        NotImplementedError
            If the source does not write (a local cache: retract on the archive).
        """
        ...

    def records_by_id(self, instrument: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The records with these ids (retracted or not) by id; an unknown id is left out."""
        ...

    def live_at_times(
        self, instrument: str, cal_type: str, times: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The live records of ``cal_type`` whose ``datetime_obs`` is one of ``times``.

        What the version families of many records of one type hold, when their
        family columns include ``datetime_obs`` (one indexed lookup per batch of times).
        """
        ...

    def column_names(self, instrument: str) -> list[str]:
        """The columns of the instrument's records, as stored (what a filter may name)."""
        ...

    def timeline_lanes(
        self, instrument: str, query: BrowseQuery, facets: Sequence[str]
    ) -> list[LaneCount]:
        """The records of ``query`` per values of the ``facets`` columns and ``cal_type``."""
        ...

    def timeline_marks(
        self, instrument: str, query: BrowseQuery, facets: Sequence[str], limit: int
    ) -> list[Mark]:
        """The first ``limit`` records of ``query`` by ``datetime_obs``, then id."""
        ...

    def timeline_bins(
        self, instrument: str, query: BrowseQuery, facets: Sequence[str], start: float, width: float
    ) -> list[BinCount]:
        """Records of ``query`` per lane and time bin of ``width`` seconds from ``start``."""
        ...


def history_of(record: Mapping[str, Any], published_at: str | None) -> list[HistoryEvent]:
    """The events of a record's life from its lifecycle fields, oldest first.

    Shared by both sources: each knows when the record was published, whether
    and why it is retracted, and when it last changed.
    """
    events = []
    if published_at:
        events.append(HistoryEvent("published", published_at))
    retracted_at = record.get("retracted_at")
    if retracted_at:
        reason = record.get("retract_reason") or "no reason given"
        events.append(HistoryEvent("retracted", str(retracted_at), str(reason)))
    last = record.get("last_updated")
    if last and last not in (published_at, retracted_at):
        seq = record.get("seq")
        detail = f"seq {seq}" if seq is not None else ""
        events.append(HistoryEvent("changed", str(last), detail))
    return sorted(events, key=lambda event: event.at)


def family_columns(instrument: str, cal_type: str) -> list[str]:
    """The version-family columns of ``cal_type`` in the instrument's profile (plus origin)."""
    try:
        columns = load_profile(instrument).family_columns_for(cal_type)
    except KOAError:  # an unreadable profile file: the default family still shows something
        columns = list(DEFAULT_FAMILY)
    return [*columns, "origin"]


def history_with_events(
    record: Mapping[str, Any], published_at: str | None, events: list[Mapping[str, Any]]
) -> list[HistoryEvent]:
    """A record's history from every retraction and making live again the source kept.

    ``events`` are ``{"kind", "at", "reason", "seq"}`` in order (the archive's
    ``lifecycle_events``). A retraction made before the source kept events is still
    shown from the record's own fields (:func:`history_of`).
    """
    if not events:
        return history_of(record, published_at)
    found = [HistoryEvent("published", published_at)] if published_at else []
    for event in events:
        detail = str(event.get("reason") or "") if event["kind"] == "retracted" else ""
        found.append(HistoryEvent(str(event["kind"]), str(event["at"]), detail))
    last = record.get("last_updated")
    if last and last != published_at and all(str(e["at"]) != last for e in events):
        seq = record.get("seq")
        found.append(HistoryEvent("changed", str(last), f"seq {seq}" if seq is not None else ""))
    return sorted(found, key=lambda event: event.at)


def profile_gap_nights(instrument: str) -> int:
    """The coverage map's gap threshold (nights) in the instrument's profile."""
    try:
        return load_profile(instrument).gap_nights
    except KOAError:  # an unreadable profile file: the default threshold still shows gaps
        return DEFAULT_GAP_NIGHTS

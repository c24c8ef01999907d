"""Example calibration selectors that instrument packages can use, copy or subclass.

- :class:`NearestInTimeSelector`: the calibration of a type nearest in time to
  the frame, among those whose columns (spectrograph, era, ...) match the frame.
- :class:`LatestVersionSelector`: the highest version among the calibrations
  of a type within a validity window around the frame's time.

Both query ``db.table.rows_where`` with validated column names and bound
values, accept a dict of metadata, a FITS path or a FITS data model as input,
and explain an empty result condition by condition in
:meth:`~koa_middleware.selector_base.CalibrationSelector.explain`.

Examples
--------
>>> from koa_middleware.selectors import NearestInTimeSelector
>>> dark = NearestInTimeSelector("dark", match=("spectrograph", "instrument_era"),
...                              max_days=3, master_only=True)
>>> path, record = store.select_and_get_calibration("sci_0001.fits", dark)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import InvalidRecordError
from .records import normalize_bool
from .selector_base import CalibrationSelector, record_mjd
from .selector_options import DEFAULT, Condition, Default, columns_option, days_option, format_days

if TYPE_CHECKING:
    from .database.local_database import LocalCalibrationDB

logger = logging.getLogger(__name__)

__all__ = ["ColumnMatchSelector", "NearestInTimeSelector", "LatestVersionSelector"]

# MJD = JD - 2400000.5; records without mjd_start fall back to datetime_obs.
_JULIAN_OFFSET = 2400000.5
# Days added to a narrowing window so rounding never drops a row at its edge.
_WINDOW_SLACK = 1e-6


class ColumnMatchSelector(CalibrationSelector):
    """Shared base of the example selectors: a type, matching columns and a time order.

    Parameters
    ----------
    cal_type : str
        The calibration type to select (``'dark'``, ``'flat'``, ...).
    match : sequence of str or str
        Columns whose value must equal the frame's (a comma-separated string
        is accepted too). Every name is validated before it reaches SQL.
    master_only : bool
        Only records with ``master_cal = 1``.
    origin : str | DEFAULT
        See :class:`~koa_middleware.selector_base.CalibrationSelector`.
    explain_limit : int
        How many ranked candidates :meth:`explain` lists (a display setting:
        not one of the :attr:`selection_parameters`).
    **kwargs
        Become attributes, as in the base class.
    """

    #: The ``ORDER BY`` of the ranking; ``{time}`` is the time expression.
    ranking = "ABS({time} - :frame_mjd), cal_version DESC, last_updated DESC"
    #: The attributes that change the choice (see ``CalibrationSelector.selection_parameters``).
    selection_parameters = ("cal_type", "match", "master_only", "origin")

    def __init__(
        self,
        cal_type: str,
        match: str | Iterable[str] | None = ("spectrograph", "instrument_era"),
        master_only: bool | str = False,
        origin: str | Default | None = DEFAULT,
        explain_limit: int | str = 50,
        **kwargs: Any,
    ):
        super().__init__(origin=origin, **kwargs)
        if not isinstance(cal_type, str) or not cal_type.strip():
            raise InvalidRecordError("A selector needs a cal_type such as 'dark' or 'flat'.")
        self.cal_type = cal_type.strip().lower()
        self.match = columns_option(match)
        self.master_only = bool(normalize_bool(master_only, "master_only"))
        self.explain_limit = int(explain_limit)
        self._indexed: set[tuple] = set()

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={getattr(self, name)!r}"
            for name in ("max_days", "validity_days", "master_only")
            if hasattr(self, name)
        )
        return (
            f"{type(self).__name__}(cal_type={self.cal_type!r}, match={self.match!r}"
            f"{extra}, origin={self.origin!r})"
        )

    # -- the query ----------------------------------------------------------

    def conditions(self, meta: Mapping[str, Any], columns: Iterable[str]) -> list[Condition]:
        """The conditions a candidate must meet, in the order :meth:`explain` relaxes them.

        Parameters
        ----------
        meta : Mapping
            The frame's metadata (from :meth:`get_metadata`).
        columns : iterable of str
            The columns of the database table; a condition on a missing column
            matches nothing.

        Raises
        ------
        InvalidRecordError
            If the frame lacks a value the conditions need.
        """
        columns = set(columns)
        result = []
        if self.origin != "ANY":
            sql, params = self.origin_clause()
            result.append(Condition(f"origin = {self.origin!r}", sql, params))
        result.append(Condition(f"cal_type = {self.cal_type!r}", "cal_type = :cal_type",
                                {"cal_type": self.cal_type}))  # fmt: skip
        for column in self.match:
            if meta.get(column) in (None, ""):
                raise InvalidRecordError(
                    f"The input has no {column!r}, which {type(self).__name__} matches on: add "
                    f"it to the frame's metadata or header, or leave it out of match=."
                )
            label = f"{column} = {meta[column]!r}"
            if column not in columns:
                result.append(Condition(f"{label} (no such column in the database)", "0"))
            else:
                result.append(
                    Condition(
                        label, f'"{column}" = :match_{column}', {f"match_{column}": meta[column]}
                    )
                )
        if self.master_only:
            sql = "master_cal = 1" if "master_cal" in columns else "0"
            result.append(Condition("master_cal = 1", sql))
        result.extend(self.time_conditions(meta, columns))
        return result

    def time_conditions(self, meta: Mapping[str, Any], columns: Iterable[str]) -> list[Condition]:
        """Conditions on the observation time; none in this base class."""
        return []

    @staticmethod
    def time_expression(columns: Iterable[str]) -> str:
        """SQL for a record's observation time as an MJD."""
        from_datetime = f"(julianday(datetime_obs) - {_JULIAN_OFFSET})"
        if "mjd_start" in set(columns):
            return f"COALESCE(mjd_start, {from_datetime})"
        return from_datetime

    def frame_mjd(self, meta: Mapping[str, Any]) -> float:
        """The frame's observation time as an MJD.

        Raises
        ------
        InvalidRecordError
            If the frame has neither ``mjd_start`` nor ``datetime_obs``.
        """
        mjd = record_mjd(meta)
        if mjd is None:
            raise InvalidRecordError(
                f"The input has no observation time, which {type(self).__name__} needs: add "
                "datetime_obs (or mjd_start) to its metadata, or DATE-OBS to its header."
            )
        return mjd

    def build_query(
        self, meta: Mapping[str, Any], columns: Iterable[str]
    ) -> tuple[list[Condition], str, dict]:
        """Return the conditions, the ``ORDER BY`` and the parameters of the query."""
        columns = list(columns)
        conditions = self.conditions(meta, columns)
        params = {"frame_mjd": self.frame_mjd(meta)}
        for condition in conditions:
            params.update(condition.params)
        order_by = self.ranking.format(time=self.time_expression(columns))
        return conditions, order_by, params

    def _run(
        self, input: Any, db: LocalCalibrationDB, limit: int, narrow: bool = False
    ) -> list[dict]:
        meta = self.get_metadata(input)
        columns = db.table.columns_dict
        conditions, order_by, params = self.build_query(meta, columns)
        where = " AND ".join(f"({c.sql})" for c in conditions)
        if narrow and "mjd_start" in columns and all(c.sql != "0" for c in conditions):
            window = self._indexed_window(db, where, params, columns)
            if window is not None:
                where += " AND (mjd_start BETWEEN :window_lo AND :window_hi)"
                params = {**params, "window_lo": window[0], "window_hi": window[1]}
        return list(db.table.rows_where(where, params, order_by=order_by, limit=limit))

    def _indexed_window(
        self, db: LocalCalibrationDB, where: str, params: dict, columns: Iterable[str]
    ) -> tuple[float, float] | None:
        """An ``mjd_start`` range that holds the best candidate, found through an index.

        The range only narrows the query (its own conditions and order stay), so
        the answer is the same as without it; None when it cannot be bounded
        (some matching record has no ``mjd_start``).
        """
        key = ("cal_type", *[c for c in self.match if c in columns], "mjd_start")
        if (id(db), key) not in self._indexed and callable(getattr(db, "ensure_index", None)):
            self._indexed.add((id(db), key))
            try:
                db.ensure_index(key)
            except sqlite3.Error as exc:  # e.g. a read-only cache: slower, still correct
                logger.info("No index on %s (%s); selecting without it.", key, exc)
        untimed = db.table.rows_where(f"{where} AND mjd_start IS NULL", params, select="1", limit=1)
        if next(untimed, None) is not None:
            return None
        return self.time_window(db, where, params)

    def time_window(
        self, db: LocalCalibrationDB, where: str, params: dict
    ) -> tuple[float, float] | None:
        """The ``mjd_start`` range the best candidate lies in; None when unknown.

        Subclasses bound it so that :meth:`get_candidates` reads a few index
        entries instead of every matching record.
        """
        return None

    def get_candidates(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> list[dict]:
        """The best candidate (a one-element list), or an empty list."""
        return self._run(input, db, limit=1, narrow=True)

    # -- explaining ---------------------------------------------------------

    def explain_candidates(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> list[dict]:
        """The ranking's first :attr:`explain_limit` candidates, best first."""
        return self._run(input, db, limit=self.explain_limit)

    def _funnel(self, input: Any, db: LocalCalibrationDB) -> tuple[list[Condition], list[int]]:
        meta = self.get_metadata(input)
        columns = db.table.columns_dict
        conditions, _, params = self.build_query(meta, columns)
        counts = []
        for index in range(len(conditions)):
            where = " AND ".join(f"({c.sql})" for c in conditions[: index + 1])
            counts.append(db.table.count_where(where, params))
        return conditions, counts

    def count_candidates(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> int:
        """How many records meet every condition."""
        meta = self.get_metadata(input)
        columns = db.table.columns_dict
        conditions, _, params = self.build_query(meta, columns)
        return db.table.count_where(" AND ".join(f"({c.sql})" for c in conditions), params)

    def explain_empty(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> dict:
        """Apply the conditions one at a time and say which one left no candidate.

        Returns
        -------
        dict
            ``funnel`` (each condition with the number of records left after
            it and the ones before), ``eliminated_by`` (the label of the
            condition that left none, None when the table is empty),
            ``remaining_before`` (how many it eliminated), ``relaxed`` (for each
            condition, how many records would match without it) and
            ``summary`` (one sentence).
        """
        conditions, counts = self._funnel(input, db)
        total = db.table.count
        funnel = [{"condition": "all records", "remaining": total}]
        funnel += [
            {"condition": c.label, "remaining": n} for c, n in zip(conditions, counts, strict=True)
        ]
        meta = self.get_metadata(input)
        _, _, params = self.build_query(meta, db.table.columns_dict)
        relaxed = []
        for skip in range(len(conditions)):
            rest = [c for i, c in enumerate(conditions) if i != skip]
            where = " AND ".join(f"({c.sql})" for c in rest) or "1 = 1"
            relaxed.append(
                {
                    "without": conditions[skip].label,
                    "remaining": db.table.count_where(where, params),
                }
            )
        culprit, culprit_index, before = None, None, total
        for index, step in enumerate(funnel[1:] if total else []):
            if step["remaining"] == 0:
                culprit, culprit_index = step["condition"], index
                break
            before = step["remaining"]
        if total == 0:
            summary = "no candidate: the database holds no calibration records; sync it first"
        elif culprit is None:
            summary = "no candidate, although every condition leaves some records"
        else:
            summary = f"no candidate: {culprit} eliminated the last {before} candidate(s)"
            without = relaxed[culprit_index]["remaining"]
            others = [r for r in relaxed if r["remaining"] > 0]
            if without:
                summary += f"; without it {without} would match"
            elif others:
                summary += (
                    f"; relaxing {others[0]['without']} alone would leave {others[0]['remaining']}"
                )
            else:
                summary += "; relaxing any single condition alone still leaves none"
        return {
            "funnel": funnel,
            "eliminated_by": culprit,
            "remaining_before": before if culprit else None,
            "relaxed": relaxed,
            "summary": summary,
        }

    def describe_candidate(self, meta: Mapping[str, Any], candidate: Mapping[str, Any]) -> dict:
        """The base summary, with ``matched`` limited to the selector's columns."""
        entry = super().describe_candidate(meta, candidate)
        entry["matched"] = {column: candidate.get(column) for column in self.match}
        if self.master_only:
            entry["matched"]["master_cal"] = candidate.get("master_cal")
        return entry

    def _match_text(self, meta: Mapping[str, Any]) -> str:
        parts = [f"cal_type={self.cal_type}"] + [f"{c}={meta.get(c)}" for c in self.match]
        if self.master_only:
            parts.append("master_cal=1")
        if self.origin != "ANY":
            parts.append(f"origin={self.origin}")
        return ", ".join(parts)


class NearestInTimeSelector(ColumnMatchSelector):
    """The calibration of one type nearest in time to the frame, within matching columns.

    Ties (several versions of one calibration) go to the highest version, then
    the most recently updated.

    Parameters
    ----------
    cal_type : str
        The calibration type to select.
    match : sequence of str or str
        Columns whose value must equal the frame's.
    max_days : float | None
        Ignore calibrations further than this many days from the frame.
    master_only : bool
        Only records with ``master_cal = 1``.
    origin : str | DEFAULT
        Restrict to one origin; see
        :class:`~koa_middleware.selector_base.CalibrationSelector`.
    **kwargs
        Passed to :class:`ColumnMatchSelector`.

    Examples
    --------
    >>> dark = NearestInTimeSelector("dark", max_days=2, master_only=True)
    >>> dark.select({"datetime_obs": "2024-01-03T05:00", "spectrograph": "spec_a",
    ...              "instrument_era": "era1"}, store.local_db)["filename"]  # doctest: +SKIP
    'hispec_dark_spec_a_20240103_v002.fits'
    """

    selection_parameters = (*ColumnMatchSelector.selection_parameters, "max_days")

    def __init__(
        self,
        cal_type: str,
        match: str | Iterable[str] | None = ("spectrograph", "instrument_era"),
        max_days: float | str | None = None,
        master_only: bool | str = False,
        origin: str | Default | None = DEFAULT,
        **kwargs: Any,
    ):
        super().__init__(cal_type, match=match, master_only=master_only, origin=origin, **kwargs)
        self.max_days = days_option(max_days, "max_days")

    def time_conditions(self, meta: Mapping[str, Any], columns: Iterable[str]) -> list[Condition]:
        """The record has a time and, with ``max_days``, lies within it of the frame."""
        time = self.time_expression(columns)
        result = [Condition("has an observation time", f"{time} IS NOT NULL")]
        if self.max_days is not None:
            result.append(
                Condition(
                    f"within {self.max_days:g} d of the frame",
                    f"ABS({time} - :frame_mjd) <= :max_days",
                    {"max_days": self.max_days},
                )
            )
        return result

    def time_window(
        self, db: LocalCalibrationDB, where: str, params: dict
    ) -> tuple[float, float] | None:
        """From the nearest times below and above the frame (two index seeks)."""
        frame = params["frame_mjd"]
        nearest = []
        for side, order in (("<", "DESC"), (">=", "ASC")):
            rows = db.table.rows_where(
                f"{where} AND mjd_start {side} :frame_mjd",
                params,
                # rowid keeps the order off the plain-column fast path: the index
                # on (cal_type, match..., mjd_start) already serves it
                order_by=f"mjd_start {order}, rowid {order}",
                select="mjd_start",
                limit=1,
            )
            nearest += [abs(row["mjd_start"] - frame) for row in rows]
        if not nearest:
            return (frame, frame - 1.0)  # an empty range: nothing matches
        distance = min(nearest) + _WINDOW_SLACK
        return (frame - distance, frame + distance)

    def explain_reason(self, meta, candidates, chosen, fallback, eliminated, total=None) -> str:
        """Say how near the chosen calibration is and what it matched."""
        if chosen is None or fallback:
            return super().explain_reason(meta, candidates, chosen, fallback, eliminated, total)
        distance = record_mjd(chosen) - self.frame_mjd(meta)
        return (
            f"nearest in time: {format_days(distance)} the frame, version "
            f"{chosen.get('cal_version')}, among {total or len(candidates)} candidate(s) matching "
            f"{self._match_text(meta)}"
        )


class LatestVersionSelector(ColumnMatchSelector):
    """The highest version of one calibration type within a validity window around the frame.

    Among equal versions the one nearest in time wins.

    Parameters
    ----------
    cal_type : str
        The calibration type to select.
    validity_days : float
        Half-width of the window, in days, around the frame's time.
    match : sequence of str or str
        Columns whose value must equal the frame's.
    master_only : bool
        Only records with ``master_cal = 1``.
    origin : str | DEFAULT
        Restrict to one origin.
    **kwargs
        Passed to :class:`ColumnMatchSelector`.

    Examples
    --------
    >>> flat = LatestVersionSelector("flat", validity_days=7)
    >>> flat.select("science_0001.fits", store.local_db)["cal_version"]  # doctest: +SKIP
    '003'
    """

    ranking = "cal_version DESC, ABS({time} - :frame_mjd), last_updated DESC"
    selection_parameters = (*ColumnMatchSelector.selection_parameters, "validity_days")

    def __init__(
        self,
        cal_type: str,
        validity_days: float | str = 1.0,
        match: str | Iterable[str] | None = ("spectrograph", "instrument_era"),
        master_only: bool | str = False,
        origin: str | Default | None = DEFAULT,
        **kwargs: Any,
    ):
        super().__init__(cal_type, match=match, master_only=master_only, origin=origin, **kwargs)
        days = days_option(validity_days, "validity_days")
        if days is None:
            raise InvalidRecordError("LatestVersionSelector needs validity_days, e.g. 7.")
        self.validity_days = days

    def time_conditions(self, meta: Mapping[str, Any], columns: Iterable[str]) -> list[Condition]:
        """The record lies within ``validity_days`` of the frame."""
        time = self.time_expression(columns)
        return [
            Condition("has an observation time", f"{time} IS NOT NULL"),
            Condition(
                f"within {self.validity_days:g} d of the frame",
                f"ABS({time} - :frame_mjd) <= :validity_days",
                {"validity_days": self.validity_days},
            ),
        ]

    def time_window(
        self, db: LocalCalibrationDB, where: str, params: dict
    ) -> tuple[float, float] | None:
        """The validity window itself."""
        frame = params["frame_mjd"]
        return (
            frame - self.validity_days - _WINDOW_SLACK,
            frame + self.validity_days + _WINDOW_SLACK,
        )

    def explain_reason(self, meta, candidates, chosen, fallback, eliminated, total=None) -> str:
        """Say which version was chosen, how near it is and what it matched."""
        if chosen is None or fallback:
            return super().explain_reason(meta, candidates, chosen, fallback, eliminated, total)
        distance = record_mjd(chosen) - self.frame_mjd(meta)
        return (
            f"latest version {chosen.get('cal_version')} within {self.validity_days:g} d "
            f"({format_days(distance)} the frame), among {total or len(candidates)} candidate(s) "
            f"matching {self._match_text(meta)}"
        )

"""The base class of calibration selectors.

A selector picks the calibration a science frame needs from the local
database. Subclasses override :meth:`CalibrationSelector.get_candidates` (and,
when needed, :meth:`~CalibrationSelector.select_best` or
:meth:`~CalibrationSelector.select_fallback`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

# The database selectors are handed; the reference's selectors import it from here.
from .database.local_database import LocalCalibrationDB
from .errors import InvalidRecordError
from .fits import FITSCalibration, datetime_from_mjd, fits_metadata, mjd_from_datetime
from .records import normalize_timestamp
from .selector_options import DEFAULT, Default, constructor_defaults

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT", "CalibrationSelector", "input_metadata", "record_mjd"]

#: Fields of a record shown for each candidate in :meth:`CalibrationSelector.explain`.
SUMMARY_FIELDS = ("id", "filename", "cal_type", "cal_version", "origin", "datetime_obs")

_PLACEHOLDER_RE = re.compile(r":([A-Za-z_]\w*)")


def input_metadata(input: Any, header_map: Mapping[str, Any] | None = None) -> dict:
    """Turn a selector's input into a metadata dict with normalized times.

    Parameters
    ----------
    input : Any
        A dict of metadata; a path to a FITS file (read through
        :func:`koa_middleware.fits.fits_metadata`); a
        :class:`~koa_middleware.fits.FITSCalibration`; or any object with a
        ``to_record()`` method (a data model).
    header_map : Mapping | None
        Changes to :data:`koa_middleware.fits.DEFAULT_HEADER_MAP` for FITS paths.

    Returns
    -------
    dict
        A new dict. ``datetime_obs`` is normalized to UTC ISO form when present;
        ``mjd_start`` and ``datetime_obs`` are computed from each other when only
        one is known.

    Raises
    ------
    TypeError
        If ``input`` is none of the above.
    InvalidRecordError
        If a FITS file cannot be read or a time is malformed.

    Examples
    --------
    >>> input_metadata({"datetime_obs": "2024-01-01 12:00", "spectrograph": "spec_a"})
    {'datetime_obs': '2024-01-01T12:00:00.000', 'spectrograph': 'spec_a', 'mjd_start': 60310.5}
    """
    if isinstance(input, Mapping):
        meta = dict(input)
    elif isinstance(input, str | os.PathLike):
        return fits_metadata(input, header_map)
    elif isinstance(input, FITSCalibration):
        return fits_metadata(input.path, input.header_map, **input.overrides)
    elif callable(getattr(input, "to_record", None)):
        meta = dict(input.to_record())
    else:
        raise TypeError(
            f"A selector cannot read a {type(input).__name__}: pass a dict of metadata, the "
            "path of a FITS file, or a data model with a to_record() method."
        )
    if meta.get("datetime_obs") not in (None, ""):
        meta["datetime_obs"] = normalize_timestamp(meta["datetime_obs"], "datetime_obs")
        if not _is_number(meta.get("mjd_start")):
            meta["mjd_start"] = round(mjd_from_datetime(meta["datetime_obs"]), 8)
    elif _is_number(meta.get("mjd_start")):
        meta["datetime_obs"] = datetime_from_mjd(meta["mjd_start"])
    return meta


def record_mjd(record: Mapping[str, Any]) -> float | None:
    """The observation time of a record or frame as an MJD (``mjd_start``, else ``datetime_obs``).

    Examples
    --------
    >>> record_mjd({"datetime_obs": "2024-01-01T12:00:00.000"})
    60310.5
    """
    if _is_number(record.get("mjd_start")):
        return float(record["mjd_start"])
    stamp = record.get("datetime_obs")
    if stamp in (None, ""):
        return None
    try:
        return mjd_from_datetime(normalize_timestamp(stamp, "datetime_obs"))
    except (InvalidRecordError, ValueError):
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple | list | set | frozenset):
        return [_json_value(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _origin_from_environment() -> str:
    """The origin a selector restricts to when given none: ``KOA_CALIBRATION_ORIGIN``, else ANY."""
    return (os.environ.get("KOA_CALIBRATION_ORIGIN") or "ANY").upper()


class CalibrationSelector:
    """Base class for rules that choose a calibration for an input frame.

    Parameters
    ----------
    origin : str | DEFAULT
        The origin whose calibrations are acceptable; ``'ANY'`` accepts every
        origin. :data:`DEFAULT` (or None, the reference implementation's
        spelling, which pipelines pass on) reads ``KOA_CALIBRATION_ORIGIN``,
        else ``'ANY'``.
    **kwargs
        Any other keyword becomes an attribute of the selector, so a subclass
        can read options such as ``self.max_days``.

    Attributes
    ----------
    selection_parameters : tuple of str | None
        The attributes whose values change which calibration is chosen, the
        ones a run manifest tells selections apart by. None (the default)
        counts every public attribute, as manifests always did. A subclass
        with options of its own extends its base's tuple, e.g.
        ``selection_parameters = (*NearestInTimeSelector.selection_parameters,
        "min_exptime")``; settings that only change what is shown (such as
        ``explain_limit``) stay out of it.

    Examples
    --------
    >>> class DarkSelector(CalibrationSelector):
    ...     def get_candidates(self, input, db, **kwargs):
    ...         return db.table.rows_where(
    ...             "cal_type = 'dark' AND spectrograph = :spectrograph",
    ...             {"spectrograph": input["spectrograph"]},
    ...             order_by="datetime_obs DESC", limit=1)
    >>> DarkSelector(max_days=3).max_days
    3
    """

    selection_parameters: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, origin: str | Default | None = DEFAULT, **kwargs: Any):
        if origin is None or isinstance(origin, Default):
            self.origin = _origin_from_environment()
            # Remembered so that the origin the environment gave is not taken
            # for a setting of the selector (see selection_values).
            self._environment_origin: str | None = self.origin
        else:
            self.origin = str(origin).upper()
            self._environment_origin = None
        for key, value in kwargs.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(origin={self.origin!r})"

    def selection_values(self) -> dict[str, Any]:
        """The current value of each parameter that selects (see :attr:`selection_parameters`).

        The origin is left out when it came from the environment rather than
        from the selector's arguments: a run replayed elsewhere is the same run.

        Examples
        --------
        >>> from koa_middleware.selectors import LatestVersionSelector
        >>> flat = LatestVersionSelector("flat", origin="keck", explain_limit=5)
        >>> sorted(flat.selection_values())
        ['cal_type', 'master_only', 'match', 'origin', 'validity_days']
        """
        names = self.selection_parameters
        if names is None:
            names = tuple(key for key in vars(self) if not key.startswith("_"))
        values = {name: getattr(self, name) for name in names if hasattr(self, name)}
        from_environment = getattr(self, "_environment_origin", None)
        if from_environment is not None and values.get("origin") == from_environment:
            del values["origin"]
        return values

    @classmethod
    def parameter_defaults(cls) -> dict[str, Any]:
        """The default of each constructor parameter that has a fixed one.

        Read from the signatures of the class's ``__init__`` methods;
        parameters defaulting to :data:`DEFAULT` (resolved when the selector
        is made) have none. Override it when an attribute's default differs
        from its parameter's.

        Examples
        --------
        >>> from koa_middleware.selectors import NearestInTimeSelector
        >>> NearestInTimeSelector.parameter_defaults()["max_days"] is None
        True
        """
        return {
            name: value
            for name, value in constructor_defaults(cls).items()
            if not isinstance(value, Default)
        }

    def select(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> dict | None:
        """Select the best calibration for ``input``, falling back when none is found.

        Runs :meth:`_select` (``get_candidates`` then ``select_best``) and, when
        that finds nothing, :meth:`select_fallback`.

        Parameters
        ----------
        input : Any
            The frame (or its metadata) that needs a calibration.
        db : LocalCalibrationDB
            The local calibration database to query.
        **kwargs
            Passed on to the selection methods.

        Returns
        -------
        dict | None
            The chosen record, or None.
        """
        result = self._select(input, db, **kwargs)
        if result is None:
            result = self.select_fallback(input, db, **kwargs)
        return result

    def _select(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> dict | None:
        """Run :meth:`get_candidates` then :meth:`select_best` (no fallback)."""
        candidates = self.get_candidates(input, db, **kwargs)
        return self.select_best(input, candidates, **kwargs)

    def get_candidates(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> Any:
        """Return the candidate records for ``input``; subclasses must override this.

        Raises
        ------
        NotImplementedError
            Always, in the base class.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement get_candidates(input, db, **kwargs)."
        )

    def select_best(self, input: Any, candidates: Any, **kwargs: Any) -> dict | None:
        """Choose among the candidates; by default the first one.

        ``candidates`` may be a list, any iterable of records (such as what
        ``db.table.rows_where`` returns), a single record, or None.
        """
        if candidates is None or isinstance(candidates, dict):
            return candidates
        for candidate in candidates:
            return dict(candidate)
        return None

    def select_fallback(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> dict | None:
        """Return a calibration when the main rule finds none; None by default."""
        return None

    def origin_clause(self) -> tuple[str, dict]:
        """Return an SQL condition and its parameters that restrict to ``self.origin``.

        Examples
        --------
        >>> CalibrationSelector(origin="keck").origin_clause()
        ('origin = :origin', {'origin': 'KECK'})
        >>> CalibrationSelector(origin="ANY").origin_clause()
        ('1 = 1', {})
        """
        if self.origin == "ANY":
            return "1 = 1", {}
        return "origin = :origin", {"origin": self.origin}

    @staticmethod
    def get_query_params(input: dict, sql: str, strict: bool = True) -> dict:
        """Pick from ``input`` the values of the ``:name`` placeholders used in ``sql``.

        Raises
        ------
        ValueError
            With ``strict``, when a placeholder has no value in ``input``.

        Examples
        --------
        >>> CalibrationSelector.get_query_params({"a": 1, "b": 2}, "x = :a")
        {'a': 1}
        """
        names = set(_PLACEHOLDER_RE.findall(sql))
        params = {key: value for key, value in input.items() if key in names}
        missing = names - params.keys()
        if strict and missing:
            raise ValueError(
                f"The input lacks the value(s) {sorted(missing)} that the query needs."
            )
        return params

    # -- explaining a choice ---------------------------------------------------

    def get_metadata(self, input: Any) -> dict:
        """Turn the input into a metadata dict; see :func:`input_metadata`.

        Override this when your frames are data models of your own.
        """
        return input_metadata(input)

    def explain(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> dict:
        """Run the selection and report every candidate considered, the choice, and why.

        The choice is the one :meth:`select` makes. Pipelines can log the
        result; ``koa-cal explain`` prints it.

        Parameters
        ----------
        input : Any
            The frame (or its metadata) that needs a calibration.
        db : LocalCalibrationDB
            The local calibration database to query.
        **kwargs
            Passed on to the selection methods.

        Returns
        -------
        dict
            ``selector`` (``module:Class``), ``options`` (the selector's
            settings), ``input`` (the frame's metadata), ``candidates`` (each
            with its rank, the columns it matched, its time distance in days
            from the frame and whether it was chosen), ``candidates_total``,
            ``chosen`` (the record, or None), ``fallback`` (whether
            :meth:`select_fallback` supplied it), ``reason`` (one sentence) and
            ``eliminated_by`` (for an empty result of a selector that can tell:
            which condition removed the last candidates, else None).

        Examples
        --------
        >>> report = selector.explain(frame, store.local_db)  # doctest: +SKIP
        >>> report["reason"]  # doctest: +SKIP
        'nearest in time: 2.0 h before the frame, version 002, ...'
        """
        try:
            meta = self.get_metadata(input)
        except TypeError:
            meta = {"input": repr(input)}
        candidates = [dict(c) for c in self.explain_candidates(input, db, **kwargs) or ()]
        chosen = self.select_best(input, list(candidates), **kwargs)
        fallback = False
        if chosen is None:
            chosen = self.select_fallback(input, db, **kwargs)
            fallback = chosen is not None
        chosen_id = chosen.get("id") if chosen else None
        described = []
        for rank, candidate in enumerate(candidates, start=1):
            entry = self.describe_candidate(meta, candidate)
            entry["rank"] = rank
            entry["chosen"] = chosen_id is not None and candidate.get("id") == chosen_id
            described.append(entry)
        total = self.count_candidates(input, db, **kwargs) if candidates else 0
        eliminated = None
        if chosen is None:
            eliminated = self.explain_empty(input, db, **kwargs)
        return {
            "selector": f"{type(self).__module__}:{type(self).__qualname__}",
            "options": {
                key: _json_value(value)
                for key, value in vars(self).items()
                if not key.startswith("_")
            },
            "input": {key: _json_value(value) for key, value in meta.items()},
            "candidates": described,
            "candidates_total": total if total is not None else len(candidates),
            "chosen": chosen,
            "fallback": fallback,
            "reason": self.explain_reason(
                meta, candidates, chosen, fallback, eliminated, total or len(candidates)
            ),
            "eliminated_by": eliminated,
        }

    def explain_candidates(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> list:
        """The candidates :meth:`explain` reports, best first; by default :meth:`get_candidates`.

        Selectors whose ``get_candidates`` stops at the best one override this to
        return more of the ranking.
        """
        candidates = self.get_candidates(input, db, **kwargs)
        if candidates is None:
            return []
        if isinstance(candidates, Mapping):
            return [dict(candidates)]
        return [dict(candidate) for candidate in candidates]

    def count_candidates(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> int | None:
        """How many records qualify in all, when more than those listed may; None if unknown.

        :meth:`explain` then reports the number of candidates it lists.
        """
        return None

    def describe_candidate(self, meta: Mapping[str, Any], candidate: Mapping[str, Any]) -> dict:
        """Summarize one candidate for :meth:`explain`: its key fields and time distance.

        Returns
        -------
        dict
            The fields of :data:`SUMMARY_FIELDS`, ``matched`` (columns whose
            value equals the frame's) and ``time_distance_days`` (candidate time
            minus frame time, None when either is unknown).
        """
        entry = {field: candidate.get(field) for field in SUMMARY_FIELDS}
        entry["matched"] = {
            key: candidate[key]
            for key in meta
            if key in candidate
            and key not in SUMMARY_FIELDS
            and key != "mjd_start"
            and candidate[key] == meta[key]
        }
        frame_time, cal_time = record_mjd(meta), record_mjd(candidate)
        entry["time_distance_days"] = (
            None if frame_time is None or cal_time is None else round(cal_time - frame_time, 6)
        )
        return entry

    def explain_empty(self, input: Any, db: LocalCalibrationDB, **kwargs: Any) -> dict | None:
        """Say which condition eliminated the last candidates; None if the selector cannot tell."""
        return None

    def explain_reason(
        self,
        meta: Mapping[str, Any],
        candidates: list[dict],
        chosen: dict | None,
        fallback: bool,
        eliminated: dict | None,
        total: int | None = None,
    ) -> str:
        """One sentence saying why ``chosen`` was chosen, or why nothing was.

        Parameters
        ----------
        meta : Mapping
            The frame's metadata.
        candidates : list of dict
            The candidates listed, best first.
        chosen : dict | None
            The chosen record.
        fallback : bool
            Whether :meth:`select_fallback` supplied ``chosen``.
        eliminated : dict | None
            What :meth:`explain_empty` returned.
        total : int | None
            How many records qualified in all.

        Returns
        -------
        str
            The sentence.
        """
        if chosen is not None and fallback:
            return "get_candidates found nothing; select_fallback supplied this calibration"
        if chosen is not None:
            return f"select_best chose it among {total or len(candidates)} candidate(s)"
        if eliminated and eliminated.get("summary"):
            return str(eliminated["summary"])
        return "get_candidates found no candidate and select_fallback returned none"

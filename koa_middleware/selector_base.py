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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .database.local_database import LocalCalibrationDB

logger = logging.getLogger(__name__)

__all__ = ["CalibrationSelector"]

_PLACEHOLDER_RE = re.compile(r":([A-Za-z_]\w*)")


class CalibrationSelector:
    """Base class for rules that choose a calibration for an input frame.

    Parameters
    ----------
    origin : str | None
        The origin whose calibrations are acceptable. None reads
        ``KOA_CALIBRATION_ORIGIN``, else ``'ANY'`` (every origin).
    **kwargs
        Any other keyword becomes an attribute of the selector, so a subclass
        can read options such as ``self.max_days``.

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

    def __init__(self, origin: str | None = None, **kwargs: Any):
        if origin is None:
            origin = os.environ.get("KOA_CALIBRATION_ORIGIN") or "ANY"
        self.origin = origin.upper()
        for key, value in kwargs.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(origin={self.origin!r})"

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

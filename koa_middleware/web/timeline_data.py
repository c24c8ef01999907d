"""What a timeline reads from a source: lanes, marks and counts per time bin.

A timeline has one lane per ``cal_type`` within each facet: a combination of
values of the instrument profile's family columns (HISPEC: ``spectrograph`` and
``instrument_era``). Both readers answer with these tuples, so the drawing
(:mod:`.timeline`) never sees SQL, and the SQL never sees the drawing.

Examples
--------
>>> facet_columns("hispec")  # doctest: +SKIP
['spectrograph', 'instrument_era']
>>> epoch_seconds("1970-01-02T00:00:00.000")
86400.0
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import NamedTuple

from ..errors import KOAError
from ..profiles import load_profile

logger = logging.getLogger(__name__)

__all__ = ["BinCount", "LaneCount", "Mark", "epoch_seconds", "facet_columns", "from_epoch"]

#: Family columns that are not facets: the lane itself, and the time axis.
_NOT_FACETS = frozenset({"cal_type", "datetime_obs", "last_updated", "origin"})


class Mark(NamedTuple):
    """One calibration on the timeline: what its mark, its link and its label need."""

    id: str
    filename: str
    cal_type: str
    datetime_obs: str
    cal_version: str
    retracted: bool
    facets: tuple[str | None, ...]


class LaneCount(NamedTuple):
    """The calibrations of one lane (facet values and ``cal_type``) and their time span."""

    facets: tuple[str | None, ...]
    cal_type: str
    records: int
    retracted: int
    first: str
    last: str


class BinCount(NamedTuple):
    """How many calibrations of one lane fall in time bin ``index``, retracted ones apart."""

    facets: tuple[str | None, ...]
    cal_type: str
    index: int
    records: int
    retracted: int


def facet_columns(instrument: str) -> list[str]:
    """The columns the timeline facets by: the profile's family columns but type and time.

    Every type's family is read (default first), each column once, in order.
    """
    try:
        profile = load_profile(instrument)
    except KOAError:  # an unreadable profile file: one facet still shows everything
        return []
    found: list[str] = []
    for family in (profile.default_family, *profile.families.values()):
        found += [c for c in family if c not in _NOT_FACETS and c not in found]
    return found


def epoch_seconds(timestamp: str) -> float:
    """Seconds since 1970 of a record's UTC timestamp (``YYYY-MM-DDTHH:MM:SS.sss``)."""
    return datetime.fromisoformat(timestamp).replace(tzinfo=UTC).timestamp()


def from_epoch(seconds: float) -> str:
    """The record timestamp (millisecond precision) of ``seconds`` since 1970.

    Examples
    --------
    >>> from_epoch(86400.5)
    '1970-01-02T00:00:00.500'
    """
    moment = datetime.fromtimestamp(round(seconds, 3), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"

"""The coverage map of an overview page: records per night per ``cal_type``, and its gaps.

The map is SVG drawn here, on the server, from numbers only (no record text goes
into it unescaped: Jinja2 escapes every attribute and label). Each ``cal_type`` is
one row; each night of the window one cell, shaded by how many records it holds.
A gap is a run of nights without a record longer than the threshold between two
nights that have some; it is drawn as a hatched band with a label, so it is told
by shape and text, not by colour alone, and listed in the table beside the map.

Examples
--------
>>> cov = build_coverage([("2024-01-01", "dark", 2), ("2024-01-09", "dark", 1)],
...                      "2024-01-01", "2024-01-10", gap_nights=3)
>>> [(g.cal_type, g.first, g.last, g.nights) for g in cov.gaps]
[('dark', '2024-01-02', '2024-01-08', 7)]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

logger = logging.getLogger(__name__)

__all__ = ["MAX_NIGHTS", "Coverage", "Gap", "build_coverage"]

#: Nights one map shows at most (the window is cut to its last ones).
MAX_NIGHTS = 366
#: Width and height of one night's cell, and the room for row labels, in SVG units.
CELL_W, CELL_H, LABEL_W, TOP = 3, 18, 110, 22


@dataclass(frozen=True)
class Gap:
    """A run of ``nights`` nights of ``cal_type`` without records, ``first`` to ``last``."""

    cal_type: str
    first: str
    last: str
    nights: int


@dataclass(frozen=True)
class Cell:
    """One drawn night: position, size, shade level (1-4) and its records."""

    x: int
    y: int
    level: int
    night: str
    records: int


@dataclass
class Coverage:
    """What the map draws and its table lists.

    Attributes
    ----------
    start, end : str
        The first and last night shown.
    cal_types : list of str
        One row each, in order.
    totals : dict
        ``cal_type`` -> (nights with records, records).
    cells : list of Cell
        Nights with records.
    gaps : list of Gap
        Runs without records longer than the threshold.
    width, height : int
        The SVG's size.
    """

    start: str
    end: str
    nights: int
    gap_nights: int
    cal_types: list[str] = field(default_factory=list)
    totals: dict[str, tuple[int, int]] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    gap_boxes: list[tuple[int, int, int, Gap]] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def row_y(self, index: int) -> int:
        """The top of row ``index``."""
        return TOP + index * (CELL_H + 4)


def build_coverage(
    nights: Iterable[tuple[str, str, int]], start: str, end: str, gap_nights: int
) -> Coverage:
    """Lay out the map of ``(night, cal_type, records)`` from ``start`` to ``end`` (dates).

    Parameters
    ----------
    nights : iterable of (str, str, int)
        Nights with records, as :meth:`CalibrationReader.nights` gives them.
    start, end : str
        The window, ``YYYY-MM-DD``; cut to its last :data:`MAX_NIGHTS` nights.
    gap_nights : int
        Runs of more nights than this without a record are gaps.
    """
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    if (last - first).days + 1 > MAX_NIGHTS:
        first = last - timedelta(days=MAX_NIGHTS - 1)
    span = (last - first).days + 1
    per_type: dict[str, dict[date, int]] = {}
    for night, cal_type, count in nights:
        day = date.fromisoformat(night)
        if first <= day <= last:
            per_type.setdefault(cal_type, {})[day] = count
    cov = Coverage(first.isoformat(), last.isoformat(), span, gap_nights)
    cov.cal_types = sorted(per_type)
    cov.width = LABEL_W + span * CELL_W + 10
    cov.height = cov.row_y(len(cov.cal_types)) + 24
    for row, cal_type in enumerate(cov.cal_types):
        counts = per_type[cal_type]
        cov.totals[cal_type] = (len(counts), sum(counts.values()))
        peak = max(counts.values())
        for day, count in sorted(counts.items()):
            level = 1 + min(3, (3 * (count - 1)) // max(peak - 1, 1)) if peak > 1 else 4
            x = LABEL_W + (day - first).days * CELL_W
            cov.cells.append(Cell(x, cov.row_y(row), level, day.isoformat(), count))
        for gap in _gaps(cal_type, sorted(counts), gap_nights):
            x = LABEL_W + (date.fromisoformat(gap.first) - first).days * CELL_W
            cov.gaps.append(gap)
            cov.gap_boxes.append((x, cov.row_y(row), gap.nights * CELL_W, gap))
    return cov


def _gaps(cal_type: str, days: list[date], longest: int) -> list[Gap]:
    """Runs of more than ``longest`` nights without records, between nights with some."""
    found = []
    for before, after in zip(days, days[1:], strict=False):
        missing = (after - before).days - 1
        if missing > longest:
            found.append(
                Gap(
                    cal_type,
                    (before + timedelta(days=1)).isoformat(),
                    (after - timedelta(days=1)).isoformat(),
                    missing,
                )
            )
    return found

"""The timeline of an instrument's calibrations, laid out on the server as SVG numbers.

One lane per ``cal_type``, grouped in panels by facet (the profile's family
columns, :func:`~.timeline_data.facet_columns`). A view of at most
:data:`MAX_MARKS` calibrations draws one mark each, a link to its record: a
circle when live, a cross when retracted (shape and colour). A larger view is
counted per time bin in SQL and drawn as bars, the retracted part hatched; a bar
links to the same view narrowed to its lane and bin, so a few clicks reach
single marks. At most :data:`MAX_LANES` lanes and :data:`MAX_BARS` bars are
drawn, which keeps the SVG under 500 KB whatever the number of records; the
lanes left out are still counted in the tables.

The layout holds numbers and record text only; the template writes it with
Jinja2's autoescaping, so no record value becomes markup.

Examples
--------
>>> view = draw_timeline(reader, "hispec", BrowseQuery())  # doctest: +SKIP
>>> view.binned, len(view.lanes)  # doctest: +SKIP
(True, 28)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .reader import BadQuery, BrowseQuery, CalibrationReader
from .timeline_data import (
    BinCount,
    LaneCount,
    Mark,
    epoch_seconds,
    facet_columns,
    from_epoch,
)

logger = logging.getLogger(__name__)

__all__ = ["MAX_BARS", "MAX_LANES", "MAX_MARKS", "Timeline", "draw_timeline"]

#: Calibrations a view draws one by one at most; past this it counts them per time bin.
#: Each mark is a link (a keyboard stop) and a row of the table beside the map, so a
#: thousand is what a page should carry.
MAX_MARKS = 1000
#: Lanes drawn at most (the others are listed in the lane table).
MAX_LANES = 40
#: Bars drawn at most: the number of bins is this over the lanes, within the bounds below.
MAX_BARS = 1000
MIN_BINS, MAX_BINS = 10, 100
#: Geometry, in SVG units.
WIDTH, LABEL_W, RIGHT, TOP = 960, 170, 16, 40
LANE_H, LANE_STEP, PANEL_HEAD, PANEL_GAP, PAD = 16, 20, 20, 6, 6
PLOT_W = WIDTH - LABEL_W - RIGHT
#: Characters of a label drawn, and of a file name in a mark's title, at most.
LABEL_CHARS, TITLE_CHARS = 26, 60
#: A type or facet value longer than this is left out of a lane's and a bar's links, which
#: stay short (such a link shows more than the lane: the other lanes of its bin too).
LINK_VALUE_CHARS = 64
TICKS = 6
DAY = 86400
#: Bin widths a view chooses from (seconds): round steps from a minute to a year, so
#: bins begin on round times (midnight UTC from a day up) and their links read well.
NICE_WIDTHS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600,
               DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 182 * DAY,
               365 * DAY)  # fmt: skip


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Lane:
    """One lane: its counts, its place (``y``; None when not drawn) and its labels."""

    count: LaneCount
    facet_text: str
    y: int | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The ``cal_type`` as drawn beside the lane."""
        return shorten(self.count.cal_type, LABEL_CHARS)


@dataclass(frozen=True)
class Panel:
    """The lanes of one facet, under a heading (empty when the profile has no facet)."""

    title: str
    y: int
    lanes: list[Lane]


@dataclass(frozen=True)
class DrawnMark:
    """A calibration's mark: where it is drawn (``x`` None: its lane is not drawn)."""

    mark: Mark
    lane: Lane
    x: float | None
    y: float | None


@dataclass(frozen=True)
class Bar:
    """The calibrations of one lane in one time bin, and the view narrowed to them."""

    count: BinCount
    lane: Lane
    first: str
    last: str
    x: float
    y: float
    width: float
    height: float
    retracted_height: float
    zoom: dict[str, str]


@dataclass
class Timeline:
    """What the timeline page draws, lists and says.

    Attributes
    ----------
    facets : list of str
        The facet columns, in order.
    start, end : str
        The time window (record timestamps).
    total, retracted : int
        Calibrations in view, and how many of them are retracted.
    binned : bool
        Counted per bin (more than :data:`MAX_MARKS`), else one mark each.
    lanes : list of Lane
        Every lane, drawn or not; ``hidden`` of them are not drawn.
    """

    facets: list[str]
    start: str
    end: str
    total: int = 0
    retracted: int = 0
    binned: bool = False
    bins: int = 0
    bin_seconds: float = 0.0
    panels: list[Panel] = field(default_factory=list)
    lanes: list[Lane] = field(default_factory=list)
    hidden: int = 0
    marks: list[DrawnMark] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = TOP

    @property
    def plot_left(self) -> int:
        """Where the time axis begins (lane labels to its left)."""
        return LABEL_W

    @property
    def plot_right(self) -> int:
        """Where the time axis ends."""
        return LABEL_W + PLOT_W

    @property
    def plot_bottom(self) -> int:
        """Where the lanes end (the grid lines stop there)."""
        return self.height - 8

    @property
    def bin_text(self) -> str:
        """The width of a bin in words (``7 days``, ``1 hour``)."""
        for unit, size in (("day", DAY), ("hour", 3600), ("minute", 60)):
            if self.bin_seconds >= size:
                number = self.bin_seconds / size
                return f"{number:g} {unit}{'' if number == 1 else 's'}"
        return f"{self.bin_seconds:g} seconds"


def draw_timeline(reader: CalibrationReader, instrument: str, query: BrowseQuery) -> Timeline:
    """Read and lay out the timeline of ``query``: marks, or bars past :data:`MAX_MARKS`.

    Parameters
    ----------
    reader : CalibrationReader
        Where the records are.
    instrument : str
        A served instrument.
    query : BrowseQuery
        The page's filters (its order is not used: time runs left to right).

    Raises
    ------
    BadQuery
        If ``date_time_start`` comes after ``date_time_end``.
    """
    low, high = query.filters.get("date_time_start"), query.filters.get("date_time_end")
    if low and high and low > high:
        raise BadQuery("date_time_start must come before date_time_end.")
    facets = facet_columns(instrument)
    counts = reader.timeline_lanes(instrument, query, facets)
    if not counts:
        return Timeline(facets, query.filters.get("date_time_start", ""), "")
    start, end = _window(query, counts)
    view = Timeline(facets, from_epoch(start), from_epoch(end))
    view.total = sum(c.records for c in counts)
    view.retracted = sum(c.retracted for c in counts)
    _place_lanes(view, counts, query)
    view.ticks = _ticks(start, end)
    by_key = {(lane.count.facets, lane.count.cal_type): lane for lane in view.lanes}
    if view.total <= MAX_MARKS:
        marks = reader.timeline_marks(instrument, query, facets, MAX_MARKS)
        # A lane published between the two reads is left for the next view.
        view.marks = [
            _mark(m, by_key[(m.facets, m.cal_type)], start, end)
            for m in marks
            if (m.facets, m.cal_type) in by_key
        ]
        return view
    view.binned = True
    shown = len(view.lanes) - view.hidden
    most = max(MIN_BINS, min(MAX_BINS, MAX_BARS // max(shown, 1)))
    low, view.bin_seconds, view.bins = bin_grid(start, end, most)
    high = low + view.bins * view.bin_seconds
    view.ticks = _ticks(low, high)
    found = reader.timeline_bins(instrument, query, facets, low, view.bin_seconds)
    view.bars = _bars(view, found, by_key, (low, high), (start, end))
    return view


def bin_grid(start: float, end: float, most: int) -> tuple[float, float, int]:
    """Round bins over ``start``..``end`` (s): ``(first bin's start, width, bins)``.

    The width is the smallest of :data:`NICE_WIDTHS` (or whole years) that covers
    the window in ``most`` bins; the first bin starts at a multiple of it, so one
    more bin may be needed.

    Examples
    --------
    >>> bin_grid(0.0, 10 * 86400.0, 10)
    (0.0, 86400, 11)
    """
    wanted = (end - start) / most
    width = next((w for w in NICE_WIDTHS if w >= wanted), None)
    if width is None:
        width = 365 * DAY * math.ceil(wanted / (365 * DAY))
    low = math.floor(start / width) * width
    return float(low), width, max(1, math.floor((end - low) / width) + 1)


def _window(query: BrowseQuery, counts: Sequence[LaneCount]) -> tuple[float, float]:
    """The time window in seconds: the filters' range, else the records' (an hour at least)."""
    low = query.filters.get("date_time_start") or min(c.first for c in counts)
    high = query.filters.get("date_time_end") or max(c.last for c in counts)
    start, end = epoch_seconds(low), epoch_seconds(high)
    if end - start < 3600:  # one moment, or a few: centre them in an hour
        middle = (start + end) / 2
        start, end = middle - 1800, middle + 1800
    return start, end


def _facet_text(facets: Sequence[str], values: Sequence[str | None]) -> str:
    return " · ".join(f"{name} {value if value is not None else '(none)'}"
                      for name, value in zip(facets, values, strict=True))  # fmt: skip


def _lane_params(view: Timeline, count: LaneCount, query: BrowseQuery) -> dict[str, str]:
    """The page's filters narrowed to one lane (a facet value too long for a link is left out)."""
    params = dict(query.api_params())
    if len(count.cal_type) <= LINK_VALUE_CHARS:
        params["cal_type"] = count.cal_type
    for name, value in zip(view.facets, count.facets, strict=True):
        if value is not None and len(value) <= LINK_VALUE_CHARS:
            params[name] = value
    return params


def _place_lanes(view: Timeline, counts: Sequence[LaneCount], query: BrowseQuery) -> None:
    """Panels per facet, lanes per ``cal_type`` in each; past :data:`MAX_LANES`, not drawn."""

    def order(count: LaneCount) -> tuple:
        return (tuple((v is None, v or "") for v in count.facets), count.cal_type)

    y = TOP
    by_facet: dict[tuple, list[LaneCount]] = {}
    for count in sorted(counts, key=order):
        by_facet.setdefault(count.facets, []).append(count)
    placed = 0
    for values, members in by_facet.items():
        text = _facet_text(view.facets, values)
        if placed >= MAX_LANES:
            view.lanes += [Lane(c, text, None, _lane_params(view, c, query)) for c in members]
            continue
        panel_y = y
        if view.facets:
            y += PANEL_HEAD
        lanes = []
        for count in members:
            drawn = placed < MAX_LANES
            lanes.append(Lane(count, text, y if drawn else None, _lane_params(view, count, query)))
            if drawn:
                y += LANE_STEP
                placed += 1
        view.lanes += lanes
        view.panels.append(Panel(shorten(text, 90), panel_y, [ln for ln in lanes if ln.y]))
        y += PANEL_GAP
    view.hidden = sum(1 for lane in view.lanes if lane.y is None)
    view.height = y + 8


def _x(seconds: float, start: float, end: float) -> float:
    fraction = min(1.0, max(0.0, (seconds - start) / (end - start)))
    return round(LABEL_W + PAD + fraction * (PLOT_W - 2 * PAD), 1)


def _ticks(start: float, end: float) -> list[tuple[float, str]]:
    """Evenly spaced times along the axis, as dates (or date and time over short spans)."""
    pattern = "%Y-%m-%d" if end - start >= 3 * 86400 else "%m-%d %H:%M"
    found = []
    for n in range(TICKS):
        seconds = start + (end - start) * n / (TICKS - 1)
        found.append(
            (_x(seconds, start, end), datetime.fromtimestamp(seconds, UTC).strftime(pattern))
        )
    return found


def _mark(mark: Mark, lane: Lane, start: float, end: float) -> DrawnMark:
    if lane.y is None:
        return DrawnMark(mark, lane, None, None)
    return DrawnMark(
        mark, lane, _x(epoch_seconds(mark.datetime_obs), start, end), lane.y + LANE_H / 2
    )


def _bars(
    view: Timeline,
    found: Sequence[BinCount],
    lanes: dict[tuple, Lane],
    grid: tuple[float, float],
    window: tuple[float, float],
) -> list[Bar]:
    """Bars of the drawn lanes on the bins' ``grid``; their links stay within ``window``."""
    merged: dict[tuple, list[int]] = {}
    for count in found:
        index = min(max(count.index, 0), view.bins - 1)
        totals = merged.setdefault((count.facets, count.cal_type, index), [0, 0])
        totals[0] += count.records
        totals[1] += count.retracted
    drawn = {  # a lane published between the two reads is left for the next view
        key: totals
        for key, totals in merged.items()
        if key[:2] in lanes and lanes[key[:2]].y is not None
    }
    peak = max((records for records, _ in drawn.values()), default=1)
    low, high = grid
    bars = []
    for (facets, cal_type, index), (records, retracted) in sorted(drawn.items()):
        lane = lanes[(facets, cal_type)]
        assert lane.y is not None
        height = max(2.0, LANE_H * records / peak)
        begins = low + index * view.bin_seconds
        ends = begins + view.bin_seconds
        first = from_epoch(max(begins, window[0]))
        last = from_epoch(min(ends - 0.001, window[1]))
        x, next_x = _x(begins, low, high), _x(ends, low, high)
        zoom = {**lane.params, "date_time_start": first, "date_time_end": last}
        bars.append(
            Bar(
                BinCount(facets, cal_type, index, records, retracted),
                lane,
                first,
                last,
                x,
                round(lane.y + LANE_H - height, 1),
                round(max(next_x - x - 1, 1.0), 1),
                round(height, 1),
                round(max(2.0, height * retracted / records), 1) if retracted else 0.0,
                zoom,
            )
        )
    return bars

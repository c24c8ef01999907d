"""Where the pages of a query ended, so that the next page seeks to its start instead of
skipping every row before it.

A v2 client pages a query with ``limit`` and ``offset`` (PROTOCOL.md), and the
database answers ``OFFSET k`` by reading and dropping ``k`` rows: paging a
third of a million records costs time in proportion to the square of their
number. When a page of a query ends, the archive remembers the sort key
(``last_updated``, ``id``) of its last row and the instrument's ``seq`` counter
as that page's statement saw it. A later request for the same query at the
offset where that page ended asks for the rows after that key instead, which an
index finds directly.

The answer is the same as with ``OFFSET``: every change to an instrument's
records (an add that changes something, a retraction) moves its ``seq``
counter, and records are never deleted, so while the counter has not moved the
rows before the remembered key are exactly the ``offset`` first ones. The
counter is read by the page's own statement (one snapshot with its rows); when
it differs from the remembered one the page is read again with ``OFFSET``.

Examples
--------
>>> marks = PageMarks()
>>> end = PageMark(7, "2026-01-01T00:00:00.000", "0b9e...")
>>> marks.remember("hispec", {"cal_type": "dark"}, False, 3000, end)
>>> marks.find("hispec", {"cal_type": "dark"}, False, 3000).seq
7
>>> marks.find("hispec", {"cal_type": "dark"}, False, 6000) is None
True
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import NamedTuple

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_PAGE_MARKS", "PageMark", "PageMarks"]

#: Page ends remembered (least recently used forgotten first); a few hundred bytes each.
DEFAULT_PAGE_MARKS = 4096
#: Queries whose filters are longer than this (in characters) are not remembered, so
#: that the marks stay small whatever clients send.
MAX_FILTER_CHARS = 1024


class PageMark(NamedTuple):
    """The end of a page: the ``seq`` counter its statement saw, and its last row's sort key."""

    seq: int
    last_updated: str
    id: str


class PageMarks:
    """Page ends of recent queries, shared by the threads of one server.

    Parameters
    ----------
    capacity : int
        Page ends kept; the least recently used is forgotten first.
    """

    def __init__(self, capacity: int = DEFAULT_PAGE_MARKS):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._marks: OrderedDict[tuple, PageMark] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._marks)

    def __repr__(self) -> str:
        return f"PageMarks({len(self)} of {self.capacity})"

    @staticmethod
    def _key(
        instrument: str, filters: Mapping[str, str], include_retracted: bool, offset: int
    ) -> tuple:
        return (instrument, tuple(sorted(filters.items())), include_retracted, offset)

    def find(
        self, instrument: str, filters: Mapping[str, str], include_retracted: bool, offset: int
    ) -> PageMark | None:
        """Return the mark of the page of this query that ended at ``offset``, or None.

        Parameters
        ----------
        instrument : str
            The instrument.
        filters : Mapping[str, str]
            The query's filters, as the route checked them.
        include_retracted : bool
            Whether retracted records are in the query.
        offset : int
            Rows before the page asked for.
        """
        key = self._key(instrument, filters, include_retracted, offset)
        with self._lock:
            mark = self._marks.get(key)
            if mark is not None:
                self._marks.move_to_end(key)
            return mark

    def remember(
        self,
        instrument: str,
        filters: Mapping[str, str],
        include_retracted: bool,
        offset: int,
        mark: PageMark,
    ) -> None:
        """Remember that the query's first ``offset`` rows end with ``mark``."""
        if sum(len(name) + len(value) for name, value in filters.items()) > MAX_FILTER_CHARS:
            return
        key = self._key(instrument, filters, include_retracted, offset)
        with self._lock:
            self._marks[key] = mark
            self._marks.move_to_end(key)
            while len(self._marks) > self.capacity:
                self._marks.popitem(last=False)

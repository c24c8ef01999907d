"""Answers of the pages' whole-table questions, kept while their source stays the same.

Counting every record (the overview's counts, a browse query's total) reads the whole
table; at 100,000 records that is most of a page's time. The answer only changes
when the source does, so each reader keeps it under the source's version: the
archive catalog's ``seq`` counter (every publication and retraction moves it), a
local cache's SQLite ``data_version`` and change count. A new version misses, and
the old answers age out.

Examples
--------
>>> memo = VersionedMemo()
>>> memo.get(7, ("count", "hispec"), lambda: 41)
41
>>> memo.get(7, ("count", "hispec"), lambda: 0)  # same version: kept
41
>>> memo.get(8, ("count", "hispec"), lambda: 42)
42
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .reader import BrowseQuery, TypeCount

logger = logging.getLogger(__name__)

__all__ = ["VersionedMemo", "count_from_type_counts", "query_key"]

T = TypeVar("T")


class VersionedMemo:
    """A small LRU of answers keyed by ``(source version, question)``; thread-safe.

    Parameters
    ----------
    size : int
        Answers kept at most.
    """

    def __init__(self, size: int = 256):
        self.size = size
        self._found: OrderedDict[tuple[Hashable, Hashable], object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: Hashable, key: Hashable, compute: Callable[[], T]) -> T:
        """The answer to ``key`` at ``version``, computed once (callers must not change it)."""
        full = (version, key)
        with self._lock:
            if full in self._found:
                self._found.move_to_end(full)
                return self._found[full]  # type: ignore[return-value]
        value = compute()  # outside the lock: two first askers may both compute, harmlessly
        with self._lock:
            self._found[full] = value
            while len(self._found) > self.size:
                self._found.popitem(last=False)
        return value


def count_from_type_counts(counts: list[TypeCount], query: BrowseQuery) -> int | None:
    """A browse query's total from the counts per ``cal_type`` and origin, or None.

    A query that filters by nothing but ``cal_type`` and ``origin`` counts what the
    overview's counts hold already, so both pages share one scan of the table.
    """
    if not set(query.filters) <= {"cal_type", "origin"}:
        return None
    return sum(
        c.live + (c.retracted if query.include_retracted else 0)
        for c in counts
        if all(getattr(c, name) == value for name, value in query.filters.items())
    )


def query_key(query: BrowseQuery) -> tuple[tuple[str, str], ...]:
    """A browse query as a key of the memo: every parameter that can change an answer."""
    return tuple(sorted(query.params().items()))

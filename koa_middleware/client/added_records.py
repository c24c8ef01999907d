"""The records a sync added, kept compressed: a first sync of a million records stays small.

A sync returns every record it added or updated (``store.sync_records_from_remote()``,
``store.last_sync.added``). As dicts, a million records take over a gigabyte;
:class:`AddedRecords` keeps each stored batch as one compressed block instead
(``marshal`` of the records' values, field names once per run of records with
the same fields, then ``zlib``), some 100 bytes a record, and gives dicts back
when read.
"""

from __future__ import annotations

import bisect
import logging
import marshal
import zlib
from collections.abc import Iterator, Sequence
from itertools import groupby
from typing import Any, overload

logger = logging.getLogger(__name__)

__all__ = ["AddedRecords"]

#: zlib's level: the fastest, which already shrinks a block of records about threefold.
_LEVEL = 1


class AddedRecords(Sequence[dict]):
    """A read-only sequence of records, stored batch by batch in compressed blocks.

    It compares equal to a list (or any sequence) of the same records. Each
    read gives new dicts: changing one changes nothing here.

    Examples
    --------
    >>> added = AddedRecords()
    >>> added.extend([{"id": "a", "cal_type": "dark"}, {"id": "b", "cal_type": "flat"}])
    >>> len(added), added[1], added == [{"id": "a", "cal_type": "dark"},
    ...                                 {"id": "b", "cal_type": "flat"}]
    (2, {'id': 'b', 'cal_type': 'flat'}, True)
    >>> [r["id"] for r in added[::-1]]
    ['b', 'a']
    """

    __hash__ = None  # type: ignore[assignment]  # a sequence that grows: unhashable, as a list

    def __init__(self) -> None:
        #: Compressed blocks, or the records themselves when they cannot be marshalled.
        self._blocks: list[_Block | list[dict]] = []
        #: The number of records before each block (for finding the block of an index).
        self._starts: list[int] = []
        self._length = 0
        self._decoded: tuple[int, list[dict]] | None = None

    def extend(self, records: Sequence[dict]) -> None:
        """Add a batch of records at the end (kept as one block)."""
        if not records:
            return
        block: _Block | list[dict]
        try:
            block = _Block(records)
        except ValueError:  # a value marshal cannot write: keep this batch as it is
            block = [dict(record) for record in records]
        self._starts.append(self._length)
        self._blocks.append(block)
        self._length += len(records)

    def _block(self, number: int) -> list[dict]:
        if self._decoded is not None and self._decoded[0] == number:
            return self._decoded[1]
        block = self._blocks[number]
        if isinstance(block, list):
            return [dict(record) for record in block]
        records = block.records()
        self._decoded = (number, records)
        return records

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> dict: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict]: ...

    def __getitem__(self, index: int | slice) -> dict | list[dict]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("AddedRecords index out of range")
        number = bisect.bisect_right(self._starts, index) - 1
        return dict(self._block(number)[index - self._starts[number]])

    def __iter__(self) -> Iterator[dict]:
        for number in range(len(self._blocks)):
            for record in self._block(number):
                yield dict(record)

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, AddedRecords | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __repr__(self) -> str:
        return f"AddedRecords({self._length} record(s); list(...) gives them as dicts)"


class _Block:
    """One batch of records: per run of records with the same fields, its columns.

    Marshal writes only plain types, so a column of a ``str`` subclass (the ids,
    :class:`~koa_middleware.records.CalId`) is written as plain strings and
    made that subclass again when read.

    Raises
    ------
    ValueError
        If a value is of a type marshal cannot write.
    """

    __slots__ = ("data", "kinds")

    def __init__(self, records: Sequence[dict]):
        runs = []
        #: Per run: position -> the str subclass of that column.
        self.kinds: list[dict[int, type]] = []
        for keys, run in groupby(records, key=tuple):
            columns = list(zip(*map(dict.values, run), strict=True))
            kinds = {}
            for position, column in enumerate(columns):
                kind = type(column[0])
                if kind is not str and issubclass(kind, str):
                    kinds[position] = kind
                    columns[position] = tuple(map(str, column))
            runs.append((keys, columns))
            self.kinds.append(kinds)
        self.data = zlib.compress(marshal.dumps(runs), _LEVEL)

    def records(self) -> list[dict]:
        """The records, as new dicts."""
        records: list[dict] = []
        for (keys, columns), kinds in zip(
            marshal.loads(zlib.decompress(self.data)), self.kinds, strict=True
        ):
            for position, kind in kinds.items():
                columns[position] = tuple(map(kind, columns[position]))
            records.extend(
                dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)
            )
        return records

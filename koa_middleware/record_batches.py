"""Many records checked at once: the rules of :mod:`koa_middleware.records`, column by column.

A sync or a bulk ``add`` hands over tens of thousands of records, most with the
same fields and values already in normal form. Here each rule runs once per column
over a run of records with the same fields (joined bytes, slices, sets of distinct
values) instead of once per value; any value not already in normal form falls back
to :func:`~koa_middleware.records.validate_record`, so the results and the errors are
exactly those of checking the records one by one (``tests/store/test_validate_records.py``,
``tests/store/test_add_batches.py``).

Examples
--------
>>> recs = validate_records([{"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427",
...     "filename": "d.fits", "cal_type": "dark", "datetime_obs": "2024-01-01"}])
>>> recs[0]["datetime_obs"]
'2024-01-01T00:00:00.000'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import chain, groupby, repeat
from operator import itemgetter
from typing import Any, NamedTuple

from .errors import InvalidRecordError

# The per-value rules and their patterns, shared with the one-by-one path.
from .records import (
    _MD5_RE,
    _VALID_COLUMNS,
    _VERSION_RE,
    BOOLEAN_COLUMNS,
    LIFECYCLE_FIELDS,
    LOCAL_REQUIRED_FIELDS,
    MAX_FILENAME_BYTES,
    MAX_INTEGER,
    MAX_REASON_CHARS,
    MIN_INTEGER,
    CalId,
    _normalize_value,
    split_lifecycle,
    validate_column_name,
    validate_record,
)

logger = logging.getLogger(__name__)

__all__ = ["RecordRun", "validate_records", "validate_runs"]


def validate_records(
    records: Sequence[Any],
    required: Iterable[str] = LOCAL_REQUIRED_FIELDS,
    shared: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Validate many records: the same as ``[validate_record(r, required) for r in records]``.

    Faster for large batches: see :func:`validate_runs`, whose runs this
    returns one after the other.

    Parameters
    ----------
    records : Sequence
        The records.
    required : iterable of str
        Fields that must be present and not null.
    shared : dict | None
        When given, equal field names and equal short strings (other than
        ``id``, ``filename`` and ``file_md5``) of the records share one object,
        looked up and kept in this dict: a large sync keeps its records small.

    Returns
    -------
    list of dict
        New dicts with normalized values, in the order of ``records``.

    Raises
    ------
    InvalidRecordError
        As :func:`validate_record`, for the first record that breaks a rule.

    Examples
    --------
    >>> recs = validate_records([{"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427",
    ...     "filename": "d.fits", "cal_type": "dark", "datetime_obs": "2024-01-01"}])
    >>> recs[0]["datetime_obs"]
    '2024-01-01T00:00:00.000'
    """
    runs = validate_runs(records, required, shared)
    return list(chain.from_iterable(run.records for run in runs))


class RecordRun(NamedTuple):
    """Consecutive validated records with the same set of fields (see :func:`validate_runs`).

    ``columns`` holds the values of each field of ``fields``, as the records
    hold them, when they are at hand (else None); ``rows`` holds the same
    values record by record, when no rule changed any (else None). One
    statement stores a run.
    """

    records: list[dict[str, Any]]
    fields: tuple[str, ...]
    columns: list[Sequence[Any]] | None
    rows: list[tuple[Any, ...]] | None = None


def validate_runs(
    records: Sequence[Any],
    required: Iterable[str] = LOCAL_REQUIRED_FIELDS,
    shared: dict[str, str] | None = None,
    *,
    mark_ids: bool = True,
) -> list[RecordRun]:
    """Validate many records, returned in runs of consecutive records with the same fields.

    The records are taken in runs with the same set of fields, and each rule
    runs once per run and column, over all of its values at once, wherever all
    of them are already in their normal form. Each record is then copied as
    it is (``dict(record)``, which keeps its order of fields) and only the
    columns whose values the rules changed are written into the copies. When
    any value is not in normal form and its rule cannot be run over the whole
    column, the records are checked one by one with :func:`validate_record`,
    so the result and the error raised are exactly the ones of that loop.

    Parameters
    ----------
    records : Sequence
        The records.
    required : iterable of str
        Fields that must be present and not null.
    shared : dict | None
        As for :func:`validate_records`.
    mark_ids : bool
        Make each valid ``id`` a :class:`CalId`, as :func:`validate_record`
        does. False leaves canonical ids the strings they were: records handed
        back to a caller need no mark, and a batch of marked ids costs the
        garbage collector 100,000 objects to follow per 100,000 records.

    Returns
    -------
    list of RecordRun
        New dicts with normalized values, in the order of ``records``.

    Raises
    ------
    InvalidRecordError
        As :func:`validate_record`, for the first record that breaks a rule.

    Examples
    --------
    >>> runs = validate_runs([{"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427",
    ...     "filename": "d.fits", "cal_type": "dark", "datetime_obs": "2024-01-01"}])
    >>> len(runs), runs[0].fields, runs[0].records[0]["datetime_obs"]
    (1, ('id', 'filename', 'cal_type', 'datetime_obs'), '2024-01-01T00:00:00.000')
    """
    required = tuple(required)
    if not isinstance(records, list):
        records = list(records)
    if not records:
        return []
    if set(map(type, records)) != {dict}:
        return _validate_one_by_one(records, required, shared)
    checks = _COLUMN_CHECKS if mark_ids else _UNMARKED_COLUMN_CHECKS
    runs = []
    # Shared records are built anew in the order of their run's fields: a run keeps one order.
    for keys, run, rows, columns in _runs_of_same_fields(records, rebuilt=shared is not None):
        checked = _checked_run(keys, run, rows, columns, required, shared, checks)
        if checked is None:
            return _validate_one_by_one(records, required, shared)
        runs.append(checked)
    return runs


def _runs_of_same_fields(
    records: list[dict], rebuilt: bool
) -> Iterator[tuple[tuple[str, ...], list[dict], list[tuple] | None, list[list[Any]]]]:
    """The runs of consecutive records with the same set of fields, with their rows and columns.

    A run's rows and columns are its records' values (see :func:`_rows_and_columns`).
    The usual batch, whose records all have one set of fields, is one run,
    found without grouping: every record has as many fields as the first, and
    all of its fields. When the records are ``rebuilt`` from their columns
    (``validate_runs(shared=...)``), the records of a run also have their
    fields in one order, and no rows are taken.
    """
    keys = tuple(records[0])
    if not rebuilt and set(map(len, records)) == {len(keys)}:
        try:
            return iter([(keys, records, *_rows_and_columns(keys, records, with_rows=True))])
        except KeyError:
            pass  # another set of fields of the same size: the runs are looked for
    return (
        (keys, run, *_rows_and_columns(keys, run, with_rows=not rebuilt))
        for keys, run in ((keys, list(run)) for keys, run in groupby(records, key=tuple))
    )


def _rows_and_columns(
    keys: tuple[str, ...], run: list[dict], with_rows: bool
) -> tuple[list[tuple] | None, list[list[Any]]]:
    """The values of the fields of ``keys``: a tuple per record (or None), and a list per field.

    With rows, each record is read once, into its tuple, and the columns are
    taken from the tuples, which lie together in memory: about half the time
    of reading every record once per field, and the rows are what one
    statement stores. Without, the columns are read from the records, and
    no tuple per record adds to the memory a large sync holds at its peak.
    A single field has no rows.
    """
    if not with_rows or len(keys) == 1:
        return None, [list(map(itemgetter(key), run)) for key in keys]
    rows = list(map(itemgetter(*keys), run))
    return rows, [list(map(itemgetter(index), rows)) for index in range(len(keys))]


def _validate_one_by_one(
    records: Sequence[Any], required: tuple[str, ...], shared: dict[str, str] | None
) -> list[list[dict[str, Any]]]:
    checked = [validate_record(record, required) for record in records]
    if shared is not None:
        checked = [_share(record, shared) for record in checked]
    runs = (list(run) for _, run in groupby(checked, key=dict.keys))
    return [RecordRun(run, tuple(run[0]), None) for run in runs]


def _share(record: dict[str, Any], shared: dict[str, str]) -> dict[str, Any]:
    return {
        shared.setdefault(key, key): (
            shared.setdefault(value, value)
            if type(value) is str and len(value) <= _SHARED_CHARS and key not in _UNSHARED
            else value
        )
        for key, value in record.items()
    }


# Values shared between records (see validate_records): short strings of fields whose
# values repeat.
_SHARED_CHARS = 32
_UNSHARED = frozenset({"id", "filename", "file_md5"})


def _checked_run(
    keys: tuple[str, ...],
    run: list[dict],
    rows: list[tuple] | None,
    columns: list[list[Any]],
    required: tuple[str, ...],
    shared: dict[str, str] | None,
    checks: dict[str, Callable[[list, set[type]], Sequence[Any] | None]],
) -> RecordRun | None:
    """Normalized copies of records with the same fields; None if one needs a closer look."""
    try:
        for key in keys:
            if key not in _VALID_COLUMNS:
                validate_column_name(key)
    except InvalidRecordError:
        return None
    if not keys or len({key.lower() for key in keys}) != len(keys):
        return None
    if any(field not in keys for field in required):
        return None
    normals: list[Sequence[Any]] = []
    for key, column in zip(keys, columns, strict=True):
        normal = _normal_column(key, column, key in required, checks.get(key))
        if normal is None:
            return None
        normals.append(normal)
    if shared is not None:
        return RecordRun(_shared_records(keys, normals, shared), keys, None)
    copies = list(map(dict.copy, run))
    for key, column, normal in zip(keys, columns, normals, strict=True):
        if normal is not column:  # write back only what a rule changed
            rows = None
            for copy, value in zip(copies, normal, strict=True):
                copy[key] = value
    return RecordRun(copies, keys, normals, rows)


def _shared_records(
    keys: tuple[str, ...], normals: list[Sequence[Any]], shared: dict[str, str]
) -> list[dict[str, Any]]:
    """Records built from normalized columns, their names and short repeated values shared."""
    for index, (key, normal) in enumerate(zip(keys, normals, strict=True)):
        if (
            key not in _UNSHARED
            and set(map(type, normal)) == {str}
            and max(map(len, normal)) <= _SHARED_CHARS
        ):
            normals[index] = list(map(shared.setdefault, normal, normal))
    keys = tuple(shared.setdefault(key, key) for key in keys)
    return list(map(dict, map(zip, repeat(keys), zip(*normals, strict=True))))


def _normal_column(
    key: str,
    column: list,
    required: bool,
    check: Callable[[list, set[type]], Sequence[Any] | None] | None,
) -> Sequence[Any] | None:
    """The values of one column in normal form; None when one is not (or breaks a rule).

    ``check`` is the column's own rule, if it has one. Returns ``column``
    itself when every value already is in normal form.
    """
    kinds = set(map(type, column))
    if check is not None:
        normal = check(column, kinds)
    elif kinds == {str}:
        normal = column
    elif kinds == {int}:
        normal = column if MIN_INTEGER <= min(column) and max(column) <= MAX_INTEGER else None
    elif kinds == {float}:
        # Infinities and NaN never leave a sum, which overflows only past 1e308 (then the
        # values are looked at one by one).
        normal = column if math.isfinite(sum(column)) else None
    else:
        normal = None
    if normal is not None:
        return normal  # the checks above pass no null
    # Not all in normal form (or with nulls): the value rule for each, None if one breaks it.
    try:
        normal = [_normalize_value(key, value) for value in column]
    except Exception:
        return None
    return None if required and None in normal else normal


def _ids_column(column: list, kinds: set[type]) -> Sequence[Any] | None:
    if kinds == {CalId}:
        return column
    if kinds == {str} and _all_canonical_uuids(column):
        return list(map(CalId, column))
    return None


def _unmarked_ids_column(column: list, kinds: set[type]) -> Sequence[Any] | None:
    if kinds == {str} and _all_canonical_uuids(column):
        return column
    return _ids_column(column, kinds)


def _all_canonical_uuids(column: list) -> bool:
    """Whether every value is a UUID in lower-case hyphenated form (as ``_UUID_RE`` says).

    Checked over the values joined: each is 36 characters, hyphens stand at the
    same four places of each and nowhere else, and the rest are hex digits.
    """
    if set(map(len, column)) != {36}:
        return False
    text = "".join(column)
    if not text.isascii():
        return False
    data = text.encode("ascii")
    hyphens = b"-" * len(column)
    return (
        all(data[place::36] == hyphens for place in (8, 13, 18, 23))
        and data.count(b"-") == 4 * len(column)
        and not data.translate(None, b"-0123456789abcdef")
    )


def _filenames_column(column: list, kinds: set[type]) -> Sequence[Any] | None:
    """The column if every value is a plain ASCII file name (as ``_filename_problem`` says)."""
    if kinds != {str}:
        return None
    lengths = set(map(len, column))
    if min(lengths) == 0 or max(lengths) > MAX_FILENAME_BYTES:
        return None
    if (1 in lengths and "." in column) or (2 in lengths and ".." in column):
        return None
    text = "\n".join(column)
    if not text.isascii() or "/" in text or "\\" in text:
        return None
    data = text.encode("ascii")
    # The only control characters are the line breaks that join the names.
    if len(data) - len(data.translate(None, _ASCII_CONTROLS)) != len(column) - 1:
        return None
    return column


_ASCII_CONTROLS = bytes(range(0x20)) + b"\x7f"
# Where each separator of a canonical timestamp stands (YYYY-MM-DDTHH:MM:SS.sss).
_TIMESTAMP_SEPARATORS = ((4, b"-"), (7, b"-"), (10, b"T"), (13, b":"), (16, b":"), (19, b"."))


def _timestamps_column(column: list, kinds: set[type]) -> Sequence[Any] | None:
    """The column if every value is a canonical timestamp (as ``_ISO_RE`` says) of a real time.

    The layout is checked over the values joined: each is 23 ASCII characters,
    the separators stand where they belong, and all else is digits.
    """
    if kinds != {str} or set(map(len, column)) != {23}:
        return None
    text = "".join(column)
    if not text.isascii():
        return None
    data = text.encode("ascii")
    count = len(column)
    if any(data[place::23] != mark * count for place, mark in _TIMESTAMP_SEPARATORS):
        return None
    if len(data.translate(None, b"0123456789")) != len(_TIMESTAMP_SEPARATORS) * count:
        return None
    try:
        # The canonical form must still name a real moment (no month 13).
        for _ in map(datetime.fromisoformat, column):
            pass
    except ValueError:
        return None
    return column


def _versions_column(column: list, kinds: set[type]) -> Sequence[Any] | None:
    # Versions repeat: each distinct one is looked at once.
    if kinds == {str} and all(map(_VERSION_RE.match, set(column))) and "000" not in column:
        return column
    return None


def _origins_column(column: list, kinds: set[type]) -> Sequence[Any] | None:
    if kinds != {str}:
        return None
    # Origins repeat: each distinct one is normalized once.
    normal = {origin: origin.strip().upper() for origin in set(column)}
    if "" in normal.values():
        return None
    if all(origin == upper for origin, upper in normal.items()):
        return column
    return list(map(normal.__getitem__, column))


def _md5s_column(column: list, kinds: set[type]) -> Sequence[Any] | None:
    if kinds != {str}:
        return None
    if set(map(len, column)) == {32}:
        text = "".join(column)
        if text.isascii() and not text.encode("ascii").translate(None, b"0123456789abcdef"):
            return column
    normal = list(map(str.lower, column))
    return normal if all(map(_MD5_RE.match, normal)) else None


def _sizes_column(column: list, kinds: set[type]) -> Sequence[Any] | None:
    if kinds == {int} and min(column) >= 0 and max(column) <= MAX_INTEGER:
        return column
    return None


def _booleans_column(column: list, kinds: set[type]) -> Sequence[Any] | None:
    if kinds == {int} and set(column) <= {0, 1}:
        return column
    return None


#: Each field with a rule of its own, checked over a whole column (see validate_records).
_COLUMN_CHECKS: dict[str, Callable[[list, set[type]], Sequence[Any] | None]] = {
    "id": _ids_column,
    "filename": _filenames_column,
    "datetime_obs": _timestamps_column,
    "last_updated": _timestamps_column,
    "cal_version": _versions_column,
    "origin": _origins_column,
    "file_md5": _md5s_column,
    "file_size": _sizes_column,
    **{name: _booleans_column for name in BOOLEAN_COLUMNS},
}
#: The same, leaving canonical ids the strings they are (``validate_runs(mark_ids=False)``).
_UNMARKED_COLUMN_CHECKS = {**_COLUMN_CHECKS, "id": _unmarked_ids_column}


def split_run_lifecycle(run: RecordRun, lifecycle: dict[str, dict]) -> RecordRun:
    """``run`` without its lifecycle fields, which go into ``lifecycle`` (id -> info).

    The same as :func:`~koa_middleware.records.split_lifecycle` on each record,
    checked by column when the run's columns are at hand and their times are
    already canonical (an archive's answer): a time in another form, or a
    reason that is not short text, takes the record-by-record path, which
    normalizes or refuses it.

    Raises
    ------
    InvalidRecordError
        As :func:`~koa_middleware.records.split_lifecycle`.
    """
    names = [name for name in run.fields if name in LIFECYCLE_FIELDS]
    if not names:
        return run
    if run.columns is None or not all(_lifecycle_column_normal(run, name) for name in names):
        records = []
        for record in run.records:
            rest, info = split_lifecycle(record)
            if info:
                lifecycle[rest["id"]] = info
            records.append(rest)
        return RecordRun(records, tuple(records[0]), None)
    kept = [i for i, name in enumerate(run.fields) if name not in LIFECYCLE_FIELDS]
    fields = tuple(run.fields[i] for i in kept)
    columns = [run.columns[i] for i in kept]
    ids = run.columns[run.fields.index("id")]
    moved = [run.columns[run.fields.index(name)] for name in names]
    for cal_id, values in zip(ids, zip(*moved, strict=True), strict=True):
        lifecycle[cal_id] = dict(zip(names, values, strict=True))
    # The run's records are its own copies (see validate_runs): the fields go from them.
    for record in run.records:
        for name in names:
            del record[name]
    return RecordRun(run.records, fields, columns)


def _lifecycle_column_normal(run: RecordRun, name: str) -> bool:
    """Whether :func:`~koa_middleware.records.split_lifecycle` keeps this column as it is."""
    values = [value for value in run.columns[run.fields.index(name)] if value is not None]
    if not values:
        return True
    if name == "retract_reason":
        return all(type(value) is str and len(value) <= MAX_REASON_CHARS for value in values)
    return _timestamps_column(values, set(map(type, values))) is not None

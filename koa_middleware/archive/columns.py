"""The column names of an instrument's records, kept so that every client can store them.

Their text values are checked here too: no record is published with a control
character or a bidirectional override in a string column
(:func:`~koa_middleware.records.control_character_problem`), since every client
shows those values on terminals.

Clients keep records in SQLite tables, whose column names ignore case and which
hold at most 2,000 columns. So an instrument's records may together use at most
:data:`MAX_COLUMNS_PER_INSTRUMENT` column names (the fixed ones included), and no
two of them may differ only by case: a record with ``exptime`` is refused once
``EXPTIME`` is stored, and so is one with ``Filename``.

The names live in the ``record_columns`` table, read and extended inside the
instrument's write transaction (which serializes writers, see ``catalog.py``).
A catalog created before that table existed gets it filled from its records on
the first write to each instrument.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..records import control_character_problem
from .schema import RECORD_COLUMNS, record_columns

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_COLUMNS_PER_INSTRUMENT",
    "extra_column_names",
    "load_columns",
    "plan_columns",
    "register_columns",
]

#: Column names an instrument's records may use in all, the fixed ones (``id``,
#: ``filename``, ..., ``seq``) included: well inside SQLite's 2,000 per table, with
#: room for the columns a client adds of its own.
MAX_COLUMNS_PER_INSTRUMENT = 500

_EXTRA_KEYS = {
    "postgresql": "SELECT DISTINCT jsonb_object_keys(extra) FROM records "
    "WHERE instrument = :instrument",
    "sqlite": "SELECT DISTINCT j.key FROM records, json_each(records.extra) AS j "
    "WHERE records.instrument = :instrument",
}


def load_columns(conn: Connection, instrument: str) -> dict[str, str]:
    """Return the instrument's column names, ``{lower-case name: stored spelling}``.

    Call inside the instrument's write transaction. When the registry holds no
    name for the instrument yet, it is filled from the stored records first.
    """
    rows = conn.execute(
        sa.select(record_columns.c.folded, record_columns.c.name).where(
            record_columns.c.instrument == instrument
        )
    ).all()
    if rows:
        return {row.folded: row.name for row in rows}
    names = list(RECORD_COLUMNS)
    query = sa.text(_EXTRA_KEYS[conn.dialect.name])
    names += sorted(row[0] for row in conn.execute(query, {"instrument": instrument}))
    known: dict[str, str] = {}
    for name in names:
        first = known.setdefault(name.lower(), name)
        if first != name:
            logger.warning(
                "Records of %s use both %r and %r as columns; clients can keep only one",
                instrument,
                first,
                name,
            )
    register_columns(conn, instrument, known)
    if len(names) > len(RECORD_COLUMNS):
        logger.info("Found %d column names in the records of %s", len(known), instrument)
    return known


def register_columns(conn: Connection, instrument: str, names: Mapping[str, str]) -> None:
    """Add ``{lower-case name: spelling}`` to the instrument's column names."""
    if names:
        conn.execute(
            record_columns.insert(),
            [
                {"instrument": instrument, "folded": folded, "name": name}
                for folded, name in names.items()
            ],
        )


def plan_columns(
    batch: Sequence[Mapping[str, Any]],
    known: Mapping[str, str],
    limit: int = MAX_COLUMNS_PER_INSTRUMENT,
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Check the column names of a batch against each other and the stored ones, and its text.

    A string value holding a control character (the tab aside) or a
    bidirectional override is refused, naming its column.

    Parameters
    ----------
    batch : sequence of Mapping
        Validated records.
    known : Mapping[str, str]
        The instrument's columns, from :func:`load_columns`.
    limit : int
        Column names the instrument may use in all.

    Returns
    -------
    new : dict
        The names the batch adds, ``{lower-case name: spelling}``.
    errors : list of dict
        ``{"index", "field", "reason"}`` per refused record, in batch order.
    """
    new: dict[str, tuple[str, int]] = {}
    errors: list[dict[str, Any]] = []
    for index, record in enumerate(batch):
        unsafe = _text_error(index, record)
        if unsafe is not None:
            errors.append(unsafe)
            continue
        clashes: list[tuple[str, str]] = []
        overflow: list[str] = []
        for name in record:
            folded = name.lower()
            if folded in known:
                if known[folded] != name:
                    clashes.append(
                        (
                            name,
                            f"column {name!r} differs only by case from the instrument's "
                            f"column {known[folded]!r}; spell it {known[folded]!r}",
                        )
                    )
            elif folded in new:
                other, where = new[folded]
                if other != name:
                    owner = "this record" if where == index else f"record {where}"
                    clashes.append(
                        (
                            name,
                            f"column {name!r} differs only by case from column {other!r} of "
                            f"{owner}; use one spelling",
                        )
                    )
            elif len(known) + len(new) >= limit:
                overflow.append(name)
            else:
                new[folded] = (name, index)
        if clashes:
            reason = (
                "; ".join(text for _, text in clashes[:3])
                + (f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else "")
                + ". Column names are compared without regard to case, as SQLite does."
            )
            errors.append({"index": index, "field": clashes[0][0], "reason": reason})
        elif overflow:
            errors.append(
                {
                    "index": index,
                    "field": overflow[0],
                    "reason": f"column {overflow[0]!r} and {len(overflow) - 1} more would take "
                    f"the instrument past {limit} columns, the most an instrument may have "
                    "(every client keeps them in one SQLite table); reuse existing columns.",
                }
            )
    return {folded: name for folded, (name, _) in new.items()}, errors


def _text_error(index: int, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The error of the first string value holding a control character, or None."""
    for name, value in record.items():
        if type(value) is str:
            problem = control_character_problem(value)
            if problem:
                return {
                    "index": index,
                    "field": name,
                    "reason": f"field {name!r}: {problem} (terminals act on control characters "
                    "and bidirectional overrides); send plain text (a tab is allowed).",
                }
    return None


def extra_column_names(conn: Connection, instrument: str) -> list[str]:
    """The instrument columns (kept in ``extra``) of the stored records, read only.

    For readers of a catalog whose column registry has no name for the
    instrument yet (:func:`load_columns` fills it on the next write).
    """
    query = sa.text(_EXTRA_KEYS[conn.dialect.name])
    return sorted(row[0] for row in conn.execute(query, {"instrument": instrument}))

"""A large batch written into a small table: its indexes built once, after the rows.

SQLite keeps every index of a table up to date row by row, each insert a walk
down each index's B-tree at a random place. When a batch is at least as large
as the table it goes into, as the first sync of an empty cache is, building
each index once over the finished table is faster: SQLite sorts the keys and
writes the index in order. The indexes are dropped and made again from the
very SQL they were made with, inside the caller's write transaction, so other
connections see the table with all of its indexes before and after, and a
failure or a killed process leaves the table as it was (SQLite's DDL is
transactional).

Examples
--------
>>> import sqlite3
>>> conn = sqlite3.connect(":memory:", isolation_level=None)
>>> _ = conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, filename TEXT)")
>>> _ = conn.execute("CREATE UNIQUE INDEX ux_t_filename ON t (filename)")
>>> _ = conn.execute("BEGIN")
>>> with indexes_built_after(conn, "t", rows=20_000):
...     _ = conn.executemany("INSERT INTO t VALUES (?, ?)",
...                          ((str(i), f"{i}.fits") for i in range(20_000)))
>>> _ = conn.execute("COMMIT")
>>> conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
...              ).fetchall()
[('ux_t_filename',)]
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import InvalidRecordError
from .reading import quote_identifier
from .transactions import savepoint

logger = logging.getLogger(__name__)

__all__ = ["BULK_ROWS", "indexes_built_after"]

#: Batches of fewer rows keep the indexes as they are: rebuilding costs a few
#: milliseconds per index, which only a large batch pays back.
BULK_ROWS = 10_000


@contextmanager
def indexes_built_after(conn: sqlite3.Connection, table: str, rows: int) -> Iterator[bool]:
    """Write ``rows`` rows into ``table`` in the block; its indexes are built after them.

    Only when ``rows`` is at least :data:`BULK_ROWS` and at least the rows the
    table already holds; else the block runs with the indexes in place. Must
    be used inside a write transaction on ``conn``. The table's own key (and
    any index SQLite made for a constraint of the table) stays in place, so
    an upsert still finds its conflicts; a unique index broken by the batch
    raises :class:`sqlite3.IntegrityError` when it is made again, as an insert
    that broke it would have. The block and the indexes form one savepoint:
    an error undoes the block's rows and gives the indexes back, even where
    the caller's transaction goes on.

    Parameters
    ----------
    conn : sqlite3.Connection
        A connection inside a write transaction.
    table : str
        The table's name (validated by its owner).
    rows : int
        How many rows the block writes.

    Yields
    ------
    bool
        Whether the indexes were dropped for the block.

    Raises
    ------
    sqlite3.IntegrityError
        If a unique index cannot be made again over the rows written.
    """
    indexes = _indexes_worth_rebuilding(conn, table, rows)
    if not indexes:
        yield False
        return
    with savepoint(conn, _SAVEPOINT):
        dropped = _dropped(conn, table, indexes)
        yield dropped
        for name, sql in indexes if dropped else ():
            logger.debug("Building index %s of %s after %d rows", name, table, rows)
            conn.execute(sql)


_SAVEPOINT = "koa_bulk_load"


def _indexes_worth_rebuilding(
    conn: sqlite3.Connection, table: str, rows: int
) -> list[tuple[str, str]]:
    """The indexes of ``table`` (quoted name, SQL) to build after ``rows`` rows; maybe none."""
    if rows < BULK_ROWS:
        return []
    # The largest rowid is found at the edge of the table's tree, without a count; it is never
    # below the number of rows, so a table that only looks larger keeps its indexes.
    (largest,) = conn.execute(f"SELECT max(rowid) FROM {quote_identifier(table)}").fetchone()
    if (largest or 0) > rows:
        return []
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL ORDER BY rowid",
        (table,),
    ).fetchall()
    try:
        return [(quote_identifier(name), sql) for name, sql in indexes]
    except InvalidRecordError:
        return []  # an index named outside the rules of a column name is left alone


def _dropped(conn: sqlite3.Connection, table: str, indexes: list[tuple[str, str]]) -> bool:
    """Drop ``indexes``; False, with all of them back, if SQLite refuses one."""
    for done, (name, _) in enumerate(indexes):
        try:
            conn.execute(f"DROP INDEX {name}")
        except sqlite3.OperationalError as exc:
            # A statement of this connection still reading the table holds it. Those dropped
            # are made again, not rolled back to: a rollback would end that statement.
            logger.debug("Keeping the indexes of %s in place: %s", table, exc)
            for _, sql in indexes[:done]:
                conn.execute(sql)
            return False
    return True

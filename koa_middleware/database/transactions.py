"""A savepoint on a SQLite connection: writes that an error undoes alone.

Examples
--------
>>> import sqlite3
>>> conn = sqlite3.connect(":memory:", isolation_level=None)
>>> _ = conn.execute("CREATE TABLE t (x)")
>>> _ = conn.execute("BEGIN")
>>> try:
...     with savepoint(conn, "step"):
...         _ = conn.execute("INSERT INTO t VALUES (1)")
...         raise ValueError("refused")
... except ValueError:
...     pass
>>> _ = conn.execute("COMMIT")
>>> conn.execute("SELECT count(*) FROM t").fetchone()
(0,)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["savepoint"]


@contextmanager
def savepoint(conn: sqlite3.Connection, name: str) -> Iterator[None]:
    """Make the enclosed writes on ``conn`` one step: an error undoes them, and is raised again.

    Inside a transaction, the transaction goes on after the error; outside
    one, the savepoint is its own transaction. ``name`` is the caller's own
    constant (an identifier), never input.
    """
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")

"""Opening a SQLite file in WAL mode so that several processes can share it.

SQLite's busy timeout covers ordinary locks, but not the switch of a new
file into WAL mode: a process that holds a shared lock while another asks
for the switch gets ``database is locked`` at once, because waiting could
deadlock. Processes that open one new cache together (a cluster's workers
starting at the same moment) meet exactly that, so the switch is retried
here until the timeout. Both the cache and the archive's SQLite catalog use it.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["connect", "switch_to_wal"]


def connect(db_path: str | Path, timeout: float = 30.0) -> sqlite3.Connection:
    """Open ``db_path`` in autocommit mode, in WAL mode, with a busy timeout.

    Parameters
    ----------
    db_path : str | Path
        The SQLite file (created if missing), or ``':memory:'``.
    timeout : float
        Seconds to wait for other processes' locks, including while the
        file is switched to WAL mode.

    Returns
    -------
    sqlite3.Connection
        A connection usable from any thread (callers serialize its use).

    Raises
    ------
    sqlite3.OperationalError
        If the file stays locked for longer than ``timeout``.

    Examples
    --------
    >>> conn = connect(":memory:")
    >>> conn.execute("SELECT 1").fetchone()
    (1,)
    """
    conn = sqlite3.connect(
        str(db_path), timeout=timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    if str(db_path) != ":memory:":
        switch_to_wal(conn, timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
        # room for the indexes of ~100,000 records, so bulk adds stay in memory
        conn.execute("PRAGMA cache_size = -65536")
    return conn


def switch_to_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode (it stays so), retrying while others hold locks.

    Parameters
    ----------
    conn : sqlite3.Connection
        An open connection to the file.
    timeout : float
        Seconds to keep retrying before the lock error is raised.

    Raises
    ------
    sqlite3.OperationalError
        If the file stays locked for longer than ``timeout``, or on any other error.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            logger.debug("waiting to switch %s to WAL mode: %s", conn, exc)
            time.sleep(random.uniform(0.005, 0.05))

"""The catalog database engine: SQLite (default ``DIR/archive.db``) or PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import ConfigurationError
from ..sqlite_wal import switch_to_wal

logger = logging.getLogger(__name__)

__all__ = ["catalog_url", "make_engine"]


def catalog_url(root: str | Path, db_url: str | None = None) -> str:
    """Return the SQLAlchemy URL of an archive's catalog.

    Parameters
    ----------
    root : str | Path
        The archive folder; the default catalog is SQLite at ``root/archive.db``.
    db_url : str | None
        ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``.

    Raises
    ------
    ConfigurationError
        If ``db_url`` is neither SQLite nor PostgreSQL.

    Examples
    --------
    >>> catalog_url("/srv/archive")
    'sqlite:////srv/archive/archive.db'
    >>> catalog_url("/srv/archive", "postgresql://u@db/koa")
    'postgresql+psycopg://u@db/koa'
    """
    if not db_url:
        return f"sqlite:///{Path(root).expanduser().absolute() / 'archive.db'}"
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if db_url.startswith(prefix):
            return "postgresql+psycopg://" + db_url[len(prefix) :]
    if db_url.startswith("sqlite:///"):
        return db_url
    raise ConfigurationError(
        "Unsupported --db URL: use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE."
    )


def make_engine(url: str) -> Engine:
    """Create the engine for a catalog URL from :func:`catalog_url`.

    SQLite runs in WAL mode with full syncs and a long busy timeout; a connection
    opened with the execution option ``koa_write=True`` begins its transactions
    with ``BEGIN IMMEDIATE`` (take the write lock first, so no writer ever fails
    half-way on a lock upgrade).
    """
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_size=16, max_overflow=16)
    engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        switch_to_wal(dbapi_connection, timeout=60)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front. Readers run single statements, each
        # atomic on its own in autocommit mode, so they skip BEGIN/ROLLBACK round trips.
        if conn.get_execution_options().get("koa_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine

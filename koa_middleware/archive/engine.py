"""The catalog database engine: SQLite (default ``DIR/archive.db``) or PostgreSQL."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import ConfigurationError
from ..sqlite_wal import switch_to_wal

logger = logging.getLogger(__name__)

__all__ = ["catalog_json", "catalog_url", "make_engine"]

#: From this magnitude on, Python writes a float with an exponent and no fraction of its
#: own (``1.5e+16``), which PostgreSQL's numeric keeps as a whole number.
_EXPONENT_FROM = 1e16


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


def catalog_json(value: Any) -> str:
    """JSON text for the catalog's JSON columns, floats kept floats on PostgreSQL too.

    PostgreSQL's ``jsonb`` stores a number as ``numeric``, which reads
    ``3.5e+16`` as the whole number 35000000000000000 and gives it back without
    a fraction, so a client would get an int where a float was sent (and, as
    the decimal differs from the float's exact value, a different number).
    Such floats are written out in full with ``.0``; everything else is
    :func:`json.dumps`.

    Examples
    --------
    >>> catalog_json({"exptime": 3.5e16, "gain": 1.5, "n": 2})
    '{"exptime": 35000000000000000.0, "gain": 1.5, "n": 2}'
    """
    if isinstance(value, dict) and any(_needs_fraction(v) for v in value.values()):
        items = ", ".join(f"{json.dumps(str(k))}: {catalog_json(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list) and any(_needs_fraction(v) for v in value):
        return "[" + ", ".join(catalog_json(v) for v in value) + "]"
    if _needs_fraction(value):
        return f"{int(value)}.0"
    return json.dumps(value)


def _needs_fraction(value: Any) -> bool:
    """Whether ``value`` is, or holds, a float that PostgreSQL would keep as a whole number."""
    if isinstance(value, dict):
        return any(_needs_fraction(v) for v in value.values())
    if isinstance(value, list):
        return any(_needs_fraction(v) for v in value)
    return type(value) is float and math.isfinite(value) and abs(value) >= _EXPONENT_FROM


def make_engine(url: str) -> Engine:
    """Create the engine for a catalog URL from :func:`catalog_url`.

    SQLite runs in WAL mode with full syncs and a long busy timeout; a connection
    opened with the execution option ``koa_write=True`` begins its transactions
    with ``BEGIN IMMEDIATE`` (take the write lock first, so no writer ever fails
    half-way on a lock upgrade).
    """
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_size=16, max_overflow=16, json_serializer=catalog_json)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": 60, "check_same_thread": False},
        json_serializer=catalog_json,
    )

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

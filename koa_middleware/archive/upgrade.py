"""Bringing a catalog made by an earlier version up to the current ``records`` table.

Catalogs made before records had a life (publication and retraction) lack the
columns ``published_at``, ``retracted_at`` and ``retract_reason``.
:func:`upgrade_catalog` adds them at start-up (``ALTER TABLE ... ADD COLUMN``)
and fills ``published_at`` of the records already there from their
``last_updated``, in one transaction, so an archive made before keeps working.
Indexes of ``records`` added since (:func:`create_missing_indexes`) are built at
start-up too (``CREATE INDEX IF NOT EXISTS``; a few seconds per million records).
Several processes may start on one catalog at once: on SQLite the check and
the change run under the write lock (``BEGIN IMMEDIATE``), on PostgreSQL
``ADD COLUMN IF NOT EXISTS`` under the table lock the first ``ALTER`` takes.

Examples
--------
>>> upgrade_catalog(engine)  # doctest: +SKIP
['published_at', 'retracted_at', 'retract_reason']
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .schema import records

logger = logging.getLogger(__name__)

__all__ = ["create_missing_indexes", "upgrade_catalog"]

#: Columns added to ``records`` since the first catalogs, with their SQL types.
_ADDED_COLUMNS = ("published_at", "retracted_at", "retract_reason")


def _present_columns(conn: Connection) -> set[str]:
    if conn.dialect.name == "sqlite":
        return {row[1] for row in conn.exec_driver_sql('PRAGMA table_info("records")')}
    return {column["name"] for column in sa.inspect(conn).get_columns("records")}


def upgrade_catalog(engine: Engine) -> list[str]:
    """Add the columns of ``records`` that an older catalog lacks; return the ones added.

    ``published_at`` of the records already there is set to their ``last_updated``
    (the latest time the archive accepted them: the best known stand-in).

    Parameters
    ----------
    engine : Engine
        The catalog's engine (its tables created).

    Returns
    -------
    list of str
        The columns added (empty when the catalog was current).
    """
    added = _add_missing_columns(engine)
    create_missing_indexes(engine)  # after the columns: an index may name an added one
    return added


def _add_missing_columns(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        if set(_ADDED_COLUMNS) <= _present_columns(conn):
            return []
    added: list[str] = []
    with engine.connect() as conn:
        conn = conn.execution_options(koa_write=True)  # BEGIN IMMEDIATE on SQLite
        with conn.begin():
            present = _present_columns(conn)
            for name in _ADDED_COLUMNS:
                if name in present:
                    continue
                kind = records.c[name].type.compile(dialect=conn.dialect)
                guard = "IF NOT EXISTS " if conn.dialect.name == "postgresql" else ""
                conn.exec_driver_sql(f"ALTER TABLE records ADD COLUMN {guard}{name} {kind}")
                added.append(name)
            if "published_at" in added:
                conn.execute(
                    records.update()
                    .where(records.c.published_at.is_(None))
                    .values(published_at=records.c.last_updated)
                )
    if added:
        logger.warning(
            "Upgraded the catalog: added %s to the records table (published_at of the "
            "records already there is their last_updated)",
            ", ".join(added),
        )
    return added


def create_missing_indexes(engine: Engine) -> list[str]:
    """Build the indexes of ``records`` that an older catalog lacks; return their names.

    Parameters
    ----------
    engine : Engine
        The catalog's engine (its tables created).

    Returns
    -------
    list of str
        The indexes built (empty when the catalog had them all).
    """
    with engine.connect() as conn:
        present = {index["name"] for index in sa.inspect(conn).get_indexes("records")}
    missing = [index for index in records.indexes if index.name not in present]
    if not missing:
        return []
    with engine.connect() as conn:
        conn = conn.execution_options(koa_write=True)  # BEGIN IMMEDIATE on SQLite
        with conn.begin():
            for index in missing:
                # IF NOT EXISTS: another process starting on the catalog may have built it.
                conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
    names = [index.name for index in missing]
    logger.warning("Upgraded the catalog: built the index(es) %s", ", ".join(names))
    return names

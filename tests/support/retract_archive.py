"""Helpers for tests of retraction on a real ``koa-archive``: requests, the CLI, old catalogs.

Examples
--------
>>> from support.retract_archive import retract, feed_since
>>> retract(client, [record["id"]], "hot pixels").json()  # doctest: +SKIP
{'retracted': ['...']}
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from support.archive import archive_command

__all__ = [
    "LIFECYCLE",
    "archive_cli",
    "archive_clock_passes",
    "feed_since",
    "ids_of",
    "make_old_catalog",
    "newest_seq",
    "retract",
    "unretract",
]

#: The lifecycle fields a v2 record carries in the changes feed and include_retracted queries.
LIFECYCLE = ("published_at", "retracted_at", "retract_reason")
NO_MATCH = {"message": "No matching calibrations found."}


def retract(
    client: httpx.Client, ids: list[str], reason: Any, inst: str = "hispec"
) -> httpx.Response:
    """``POST INST/retract`` with ``{"ids": ids, "reason": reason}``."""
    return client.post(f"{inst}/retract", json={"ids": ids, "reason": reason})


def unretract(client: httpx.Client, ids: list[str], inst: str = "hispec") -> httpx.Response:
    """``POST INST/unretract`` with ``{"ids": ids}``."""
    return client.post(f"{inst}/unretract", json={"ids": ids})


def feed_since(client: httpx.Client, since: int, inst: str = "hispec") -> dict:
    """One page (up to 10,000 records) of the changes feed after ``since``."""
    response = client.get(f"{inst}/changes", params={"since": since, "limit": 10000})
    assert response.status_code == 200, response.text
    return response.json()


def newest_seq(client: httpx.Client, inst: str = "hispec") -> int:
    """The ``seq`` of the newest change of ``inst`` (0 when none)."""
    since = 0
    while True:
        page = feed_since(client, since, inst)
        since = page["next"]
        if not page["more"]:
            return since


def ids_of(answer: Any) -> list[str]:
    """The ids of a ``query`` answer (a list, one record, or no match)."""
    if answer == NO_MATCH:
        return []
    return [r["id"] for r in (answer if isinstance(answer, list) else [answer])]


def archive_cli(root: Path, db_url: str | None, *args: str) -> subprocess.CompletedProcess:
    """Run ``koa-archive ARGS --root ROOT [--db URL]`` and return the finished process."""
    db = ["--db", db_url] if db_url else []
    command, *rest = args
    argv = archive_command(command, "--root", str(root), *db, *rest)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def make_old_catalog(root: Path, db_url: str | None) -> None:
    """Turn the catalog of ``root`` into one of an earlier version: no lifecycle columns.

    The catalog must exist (records may be in it); the columns are dropped, as
    catalogs made before records had a life never had them.
    """
    url = db_url or f"sqlite:///{Path(root).absolute() / 'archive.db'}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            # Indexes naming those columns came later too (SQLite refuses the drop first).
            conn.exec_driver_sql("DROP INDEX IF EXISTS ix_records_counts")
            for name in LIFECYCLE:
                conn.exec_driver_sql(f"ALTER TABLE records DROP COLUMN {name}")
        with engine.connect() as conn:
            present = {c["name"] for c in sa.inspect(conn).get_columns("records")}
        assert not present & set(LIFECYCLE), present
    finally:
        engine.dispose()


def archive_clock_passes(remote: Any, cal_id: str, moment: str) -> str:
    """Make the archive hand out a ``last_updated`` later than ``moment``; return it.

    Each round makes the live calibration ``cal_id`` live again (a change that
    takes the archive's clock, and alters nothing else), until the archive's
    newest ``last_updated`` is past ``moment``: what follows then happens later
    on the archive's clock than ``moment``, as its millisecond stamps tell.
    ``remote`` is a ``RemoteCalibrationDB`` with a write token.
    """
    for _ in range(10_000):
        remote.unretract([cal_id])
        newest = remote.get_last_updated()
        if newest > moment:
            return newest
    raise AssertionError(f"The archive's clock did not pass {moment}.")

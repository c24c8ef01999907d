"""The web pages for tests: the pages over an archive catalog and over a local cache.

``SITES`` names three sources, on each of which the ``site`` fixture of tests/web runs
a test: the archive's pages (mounted by ``create_app``) on a SQLite catalog, on a
PostgreSQL catalog, and ``koa-cal ui``'s pages over a local cache.
Each is driven in process through its ASGI app; records go in through the catalog or
the cache's database, as publishing or syncing would put them there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from koa_middleware.archive.app import create_app
from koa_middleware.archive.schema import records as records_table
from koa_middleware.archive.state import ArchiveSettings
from koa_middleware.cache.local_cache import LocalCache
from koa_middleware.config import resolve_config
from koa_middleware.records import ARCHIVE_REQUIRED_FIELDS, validate_record
from koa_middleware.timestamps import utc_now
from koa_middleware.web import create_local_site
from koa_middleware.web.cache_reader import CacheReader

from .postgres import fresh_postgres_database

SITES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "cache"]


class Site:
    """The pages of one source, with a way to add and retract its records."""

    def __init__(self, kind: str, app: Any, base: str, backend: Any):
        self.kind = kind
        self.client = TestClient(app, follow_redirects=False)
        self.base = base
        self.backend = backend

    @property
    def is_archive(self) -> bool:
        return self.kind != "cache"

    def get(self, path: str, **params: Any):
        return self.client.get(self.base + path, params=params or None)

    def add(self, records: list[dict[str, Any]]) -> None:
        checked = [validate_record(r, ARCHIVE_REQUIRED_FIELDS) for r in records]
        if self.is_archive:
            self.backend.add("hispec", checked)
        else:
            self.backend.db.add_validated(checked)

    def retract(self, cal_id: str, reason: str) -> None:
        if self.is_archive:
            self.backend.set_lifecycle("hispec", [cal_id], reason)
        else:
            self.backend.db.set_retractions({cal_id: (utc_now(), reason)}, pushed=True)

    def set_text(self, cal_id: str, column: str, value: str) -> None:
        """Store text the archive's API would refuse (as an older archive kept it)."""
        if self.is_archive:
            with self.backend.engine.begin() as conn:
                extra = conn.execute(
                    sa.select(records_table.c.extra).where(records_table.c.id == cal_id)
                ).scalar_one()
                conn.execute(
                    records_table.update()
                    .where(records_table.c.id == cal_id)
                    .values(extra={**extra, column: value})
                )
        else:
            self.backend.db.add_validated(
                [{**self.backend.db.query_id(cal_id), column: value}], alter=True
            )


@contextlib.contextmanager
def open_site(kind: str, tmp_path: Path, anonymous_read: bool = True) -> Iterator[Site]:
    """The pages of ``kind`` ("sqlite", "postgres" or "cache") over an empty source."""
    with contextlib.ExitStack() as stack:
        if kind == "cache":
            cache = LocalCache.open(resolve_config("hispec", str(tmp_path / "cache")))
            stack.callback(cache.close)
            app = create_local_site(CacheReader({"hispec": cache}))
            yield Site(kind, app, "/ui", cache)
            return
        url = stack.enter_context(fresh_postgres_database()) if kind == "postgres" else None
        settings = ArchiveSettings(
            root=tmp_path / "archive",
            db_url=url,
            instruments=("hispec",),
            anonymous_read=anonymous_read,
        )
        app = create_app(settings)
        catalog = app.state.archive.catalog
        stack.callback(catalog.close)
        yield Site(kind, app, "/ui", catalog)

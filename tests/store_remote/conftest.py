"""Fixtures of the store's remote tests: real koa-archive servers (v2 and v1) on one catalog.

Each test takes an instrument of its own, so tests never see each other's records.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from koa_middleware import CalibrationStore
from support.archive import ArchivePair
from support.postgres import CATALOG_BACKENDS, fresh_postgres_database

INSTRUMENTS = tuple(f"store{i:03d}" for i in range(80))
_next_instrument = itertools.count()


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Iterator[ArchivePair]:
    with ArchivePair(tmp_path_factory.mktemp("store-archive"), INSTRUMENTS) as pair:
        yield pair


@pytest.fixture(scope="session", params=CATALOG_BACKENDS)
def archive_on_each_catalog(request, tmp_path_factory) -> Iterator[ArchivePair]:
    """The servers of ``archive`` (SQLite catalog), then a pair on a PostgreSQL catalog."""
    if request.param == "sqlite":
        yield request.getfixturevalue("archive")
        return
    with fresh_postgres_database() as url:
        root = tmp_path_factory.mktemp("store-archive-postgres")
        with ArchivePair(root, INSTRUMENTS, db_url=url) as pair:
            yield pair


@pytest.fixture(autouse=True)
def _clean_environment(no_koa_environment, monkeypatch):
    monkeypatch.setenv("KOA_PROGRESS", "0")


@pytest.fixture
def instrument() -> str:
    return INSTRUMENTS[next(_next_instrument)]


@pytest.fixture
def open_store(tmp_path, monkeypatch, instrument):
    """``open_store(url, token, name='a', **options)``: a store on its own cache folder."""
    stores = []

    def make(url: str, token: str | None, name: str = "a", **options) -> CalibrationStore:
        monkeypatch.setenv("KOA_CALIBRATIONS_URL", url)
        if token:
            monkeypatch.setenv("KOA_API_TOKEN", token)
        else:
            monkeypatch.delenv("KOA_API_TOKEN", raising=False)
        store = CalibrationStore(instrument, str(tmp_path / f"cache-{name}"), **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()

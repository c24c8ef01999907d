"""Fixtures of the client tests: real koa-archive servers (v2 and v1) on one shared catalog.

One archive folder is served by two processes for the whole session, one
speaking protocol 2 and one only protocol 1, so both see the same records and
files. Each test takes an instrument of its own, so tests never see each
other's records. Tests that stop, kill or restart a server start their own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from koa_middleware.cache.layout import CacheLayout
from koa_middleware.client.remote_database import RemoteCalibrationDB
from koa_middleware.database.local_database import LocalCalibrationDB
from support.archive import ArchivePair, make_client

INSTRUMENTS = tuple(f"inst{i:03d}" for i in range(160))
_next_instrument = itertools.count()


@pytest.fixture(scope="session")
def shared_archive(tmp_path_factory) -> Iterator[ArchivePair]:
    with ArchivePair(tmp_path_factory.mktemp("shared-archive"), INSTRUMENTS) as pair:
        yield pair


@pytest.fixture(autouse=True)
def _no_credentials_from_the_environment(no_koa_environment):
    """Every client test starts without KOA settings or credentials."""


@pytest.fixture
def instrument() -> str:
    """An instrument no other test uses."""
    return INSTRUMENTS[next(_next_instrument)]


@pytest.fixture
def remote(shared_archive, protocol, instrument) -> Iterator[RemoteCalibrationDB]:
    """A client with a write token, speaking ``protocol``."""
    with make_client(shared_archive.url(protocol), instrument, shared_archive.tokens["write"]) as r:
        yield r


@pytest.fixture
def publisher(shared_archive, instrument) -> Iterator[RemoteCalibrationDB]:
    """A v2 client with a write token, to put records and files on the archive."""
    with make_client(shared_archive.url(2), instrument, shared_archive.tokens["write"]) as r:
        yield r


@pytest.fixture
def local_db(tmp_path, instrument) -> Iterator[LocalCalibrationDB]:
    (tmp_path / "local").mkdir(exist_ok=True)
    db = LocalCalibrationDB(tmp_path / "local" / f"{instrument}_calibrations.db", instrument)
    yield db
    db.close()


@pytest.fixture
def layout(tmp_path) -> CacheLayout:
    """The layout of a fresh cache folder for instrument ``hispec``."""
    layout = CacheLayout(tmp_path / "cache", "hispec")
    layout.create()
    return layout

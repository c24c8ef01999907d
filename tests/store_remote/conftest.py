"""Fixtures of the store's remote tests: real koa-archive servers (v2 and v1) on one catalog.

Both servers serve one archive folder, so a store speaking either protocol sees
the same records. Each test takes an instrument of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore
from support.archive import ArchiveServer, create_token

INSTRUMENTS = tuple(f"store{i:03d}" for i in range(80))
_next_instrument = itertools.count()


@dataclass
class Archive:
    root: Path
    servers: dict[int, ArchiveServer]
    tokens: dict[str, str]

    def url(self, protocol: int = 2) -> str:
        return self.servers[protocol].base_url


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("store-archive")
    tokens = {scope: create_token(root, scope) for scope in ("read", "write")}
    servers = {p: ArchiveServer(root, protocol=p, instruments=INSTRUMENTS) for p in (2, 1)}
    try:
        for server in servers.values():
            server.start()
        yield Archive(root, servers, tokens)
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    for name in (
        "KOA_API_TOKEN",
        "KECK_OBSERVER_EMAIL",
        "KECK_OBSERVER_PASSWORD",
        "KOA_CALIBRATIONS_URL",
        "KOA_CALIBRATION_ORIGIN",
        "KOA_CALIBRATIONS_ORIGIN",
        "KOA_USE_CACHED_CALIBRATIONS",
        "KOA_INSTRUMENT_NAME",
        "KOA_CALIBRATION_CACHE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("KOA_PROGRESS", "0")


@pytest.fixture
def instrument() -> str:
    return INSTRUMENTS[next(_next_instrument)]


@pytest.fixture(params=[2, 1], ids=["v2", "v1"])
def protocol(request) -> int:
    return request.param


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

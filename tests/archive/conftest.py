"""Fixtures of the archive tests: a real koa-archive server per test, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from koa_middleware.archive.catalog import Catalog
from koa_middleware.archive.tokens import TokenStore
from support.archive import ArchiveServer, publish
from support.postgres import (  # noqa: F401  (fixtures)
    CATALOG_BACKENDS,
    catalog_url,
    fresh_postgres_database,
    postgres_url,
)
from support.s3 import S3Bucket, s3_bucket, s3_endpoint  # noqa: F401  (fixtures)


def make_tokens(root: Path, db_url: str | None) -> dict[str, str]:
    """Create one read, write and admin token in the archive's catalog."""
    catalog = Catalog.open(root, db_url)
    try:
        store = TokenStore(catalog.engine)
        return {scope: store.create(f"test-{scope}", scope) for scope in ("read", "write", "admin")}
    finally:
        catalog.close()


@dataclass
class Archive:
    """A running archive server with a token of each scope."""

    server: ArchiveServer
    tokens: dict[str, str]
    clients: dict[tuple, httpx.Client] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.server.base_url

    @property
    def root(self) -> Path:
        return self.server.root

    def client(self, scope: str | None = "write", token: str | None = None) -> httpx.Client:
        """An HTTP client on BASE; ``scope=None`` sends no token."""
        secret = token or (self.tokens[scope] if scope else None)
        key = (secret, self.base)
        if key not in self.clients:  # one client (and connection pool) per token and server
            headers = {"Authorization": f"Bearer {secret}"} if secret else {}
            self.clients[key] = httpx.Client(base_url=self.base + "/", headers=headers, timeout=60)
        return self.clients[key]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()


@pytest.fixture
def start_archive(tmp_path: Path, catalog_url: str | None):  # noqa: F811
    """Start a server on this test's catalog backend: ``start_archive(protocol=2, ...)``."""
    started: list[Archive] = []

    def start(**options: Any) -> Archive:
        root = tmp_path / f"archive{len(started)}"
        root.mkdir()
        tokens = make_tokens(root, catalog_url)
        server = ArchiveServer(root, db_url=catalog_url, **options).start()
        archive = Archive(server, tokens)
        started.append(archive)
        return archive

    yield start
    for archive in started:
        archive.close()
        archive.server.__exit__(None, None, None)


@pytest.fixture
def start_s3_archive(tmp_path: Path, s3_bucket: S3Bucket):  # noqa: F811
    """Start servers whose files are in this test's bucket.

    ``start_s3_archive(db_url=None, extra_args=(), root=None, tokens=None)``: a
    new archive folder (SQLite catalog unless ``db_url``) unless ``root`` names
    the folder of one started before, whose tokens it then shares (or ``tokens``).
    """
    started: list[Archive] = []

    def start(
        db_url: str | None = None,
        extra_args: tuple[str, ...] = (),
        root: Path | None = None,
        tokens: dict[str, str] | None = None,
    ) -> Archive:
        if root is None:
            root = tmp_path / f"s3archive{len(started)}"
            root.mkdir()
            tokens = make_tokens(root, db_url)
        elif tokens is None:
            tokens = next(a.tokens for a in started if a.root == root)
        server = ArchiveServer(
            root, db_url=db_url, extra_args=s3_bucket.server_args + tuple(extra_args)
        ).start()
        archive = Archive(server, tokens)
        started.append(archive)
        return archive

    yield start
    for archive in started:
        archive.close()
        archive.server.__exit__(None, None, None)


@pytest.fixture
def archive(start_archive) -> Archive:
    """A protocol-2 archive server on a clean catalog (SQLite, then PostgreSQL)."""
    return start_archive()


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """A file outside every archive root that traversal attempts aim at."""
    path = tmp_path / "sentinel.txt"
    path.write_text("untouched")
    return path


@pytest.fixture
def snapshot():
    """``snapshot(archive)``: everything a client sees plus the stored files."""
    return take_snapshot


def take_snapshot(archive: Archive) -> tuple:
    """Everything a client can see plus the stored files: to prove nothing changed."""
    client = archive.client("read")
    feeds = []
    for inst in archive.server.instruments:
        if archive.server.protocol == 2:
            feeds.append(client.get(f"{inst}/changes", params={"limit": 10000}).json())
        feeds.append(client.get(f"{inst}/query").json())
    files_dir = archive.root / "files"
    stored = sorted(
        (str(p.relative_to(files_dir)), p.stat().st_size)
        for p in files_dir.rglob("*")
        if p.is_file()
    )
    return tuple(map(repr, feeds)), tuple(stored)


@pytest.fixture
def iter_changes():
    """Follow an archive's changes feed: ``iter_changes(client, inst, limit)``."""

    def follow(client: httpx.Client, inst: str, limit: int = 1000) -> Iterator[dict]:
        since = 0
        while True:
            page = client.get(f"{inst}/changes", params={"since": since, "limit": limit}).json()
            yield from page["records"]
            since = page["next"]
            if not page["more"]:
                return

    return follow


@pytest.fixture(scope="module", params=CATALOG_BACKENDS)
def shared_archive(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Archive]:
    """One server per module and backend, for tests that each leave the catalog unchanged.

    Uploads are limited to 100,000 bytes. Holds one published calibration,
    ``shared_archive.seed``, whose file is ``b"seed bytes"``.
    """
    with contextlib.ExitStack() as stack:
        url = None
        if request.param == "postgres":
            url = stack.enter_context(fresh_postgres_database())
        root = tmp_path_factory.mktemp("shared") / "archive"
        root.mkdir()
        tokens = make_tokens(root, url)
        server = stack.enter_context(
            ArchiveServer(root, db_url=url, extra_args=("--max-upload-bytes", "100000"))
        )
        archive = Archive(server, tokens)
        stack.callback(archive.close)
        archive.seed = publish(archive.client("write"), b"seed bytes")  # type: ignore[attr-defined]
        yield archive


@pytest.fixture
def unchanged(shared_archive, snapshot):
    """Assert that the test leaves the catalog and the files as they were, and that the
    server logged no fault (a 500 and its traceback) meanwhile."""
    before = snapshot(shared_archive)
    logged = len(shared_archive.server.log_text())
    yield shared_archive
    assert snapshot(shared_archive) == before
    log = shared_archive.server.log_text()[logged:]
    assert "Traceback" not in log and "Request failed" not in log, log[-3000:]

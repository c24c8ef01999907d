"""Fresh PostgreSQL databases for tests, and the "sqlite"/"postgres" catalog parameter.

The server comes from ``KOA_TEST_POSTGRES_URL`` (for example
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets its own, empty
database, created under a unique name on that server and dropped afterwards.
Where the variable is unset or the server unreachable the test is skipped with
the reason; with ``KOA_REQUIRE_POSTGRES=1`` (as CI sets) it fails instead.

Use from a ``conftest.py``::

    # tests/mine/conftest.py
    from support.postgres import catalog_url, postgres_url  # noqa: F401  (fixtures)

    # tests/mine/test_x.py
    def test_on_postgres(postgres_url):      # a fresh postgresql:// URL
        ...

    def test_on_both(catalog_url, tmp_path):  # runs twice: [sqlite] and [postgres]
        # catalog_url is None for SQLite (the archive's default DIR/archive.db)
        # and a fresh postgresql:// URL for PostgreSQL.
        with ArchiveServer(tmp_path / "archive", db_url=catalog_url) as server:
            ...

Without pytest, :func:`fresh_postgres_database` is a context manager that
yields the URL and drops the database on exit.

Examples
--------
>>> from support.postgres import fresh_postgres_database
>>> with fresh_postgres_database() as url:  # doctest: +SKIP
...     print(url)
postgresql://postgres@127.0.0.1:5432/koa_test_3f2a...
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

logger = logging.getLogger(__name__)

__all__ = [
    "POSTGRES_ENV",
    "REQUIRE_ENV",
    "postgres_server_url",
    "fresh_postgres_database",
    "postgres_url",
    "catalog_url",
    "CATALOG_BACKENDS",
]

POSTGRES_ENV = "KOA_TEST_POSTGRES_URL"
REQUIRE_ENV = "KOA_REQUIRE_POSTGRES"

#: Parameters for tests that run on both catalog backends.
CATALOG_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _unavailable(reason: str) -> None:
    """Skip (or fail when PostgreSQL is required) with ``reason``."""
    if _required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so PostgreSQL tests may not be skipped)")
    pytest.skip(reason)


def postgres_server_url() -> str:
    """Return the PostgreSQL server URL from ``KOA_TEST_POSTGRES_URL``, checked reachable.

    Returns
    -------
    str
        The URL, e.g. ``postgresql://postgres@127.0.0.1:5432/test``.

    Raises
    ------
    pytest.skip.Exception, pytest.fail.Exception
        Skip when unset or unreachable; fail instead when ``KOA_REQUIRE_POSTGRES=1``.
    """
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        _unavailable(
            f"PostgreSQL tests need {POSTGRES_ENV}, e.g. postgresql://postgres@127.0.0.1:5432/test"
        )
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed: pip install -e '.[server]'")
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any connection failure means: not reachable
        _unavailable(f"PostgreSQL at {_without_password(url)} is not reachable: {exc}")
    return url


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


@contextmanager
def fresh_postgres_database(server_url: str | None = None) -> Iterator[str]:
    """Create an empty database with a unique name, yield its URL, drop it on exit.

    Parameters
    ----------
    server_url : str | None
        Any database URL on the server; default :func:`postgres_server_url`.

    Yields
    ------
    str
        ``postgresql://.../koa_test_<hex>``.
    """
    import psycopg

    server_url = server_url or postgres_server_url()
    name = f"koa_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            # FORCE ends connections a killed server process may have left behind.
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database URL for one test (dropped afterwards)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=CATALOG_BACKENDS)
def catalog_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Run a test on both catalog backends.

    Yields ``None`` for ``sqlite`` (the archive's default ``DIR/archive.db``) and a
    fresh PostgreSQL URL for ``postgres``.
    """
    if request.param == "sqlite":
        yield None
        return
    with fresh_postgres_database() as url:
        yield url

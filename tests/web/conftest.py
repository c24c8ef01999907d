"""Fixtures of the web page tests: the pages over each source (``support.web_sites``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.s3 import s3_bucket, s3_endpoint  # noqa: F401  (fixtures)
from support.web_sites import SITES, Site, open_site


@pytest.fixture(params=SITES)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """The pages over an empty SQLite catalog, PostgreSQL catalog, and local cache."""
    with open_site(request.param, tmp_path) as found:
        yield found

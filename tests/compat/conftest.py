"""Fixtures of the drop-in tests: a real koa-archive pair (v2 and v1) on one catalog."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from support.archive import ArchivePair

INSTRUMENTS = tuple(f"compat{i:02d}" for i in range(20))
_next_instrument = itertools.count()


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Iterator[ArchivePair]:
    with ArchivePair(tmp_path_factory.mktemp("compat-archive"), INSTRUMENTS) as pair:
        yield pair


@pytest.fixture
def instrument() -> str:
    """An instrument of the test's own, so tests never see each other's records."""
    return INSTRUMENTS[next(_next_instrument)]

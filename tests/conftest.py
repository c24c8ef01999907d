"""Fixtures shared by the test folders."""

from __future__ import annotations

import pytest

from support.archive import KOA_ENVIRONMENT


@pytest.fixture
def no_koa_environment(monkeypatch, tmp_path):
    """Start without any KOA setting or credential, and with a state folder of the test's own."""
    for name in KOA_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(params=[2, 1], ids=["v2", "v1"])
def protocol(request) -> int:
    """The protocol the client speaks: each test runs against v2 and v1."""
    return request.param

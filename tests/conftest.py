"""Fixtures shared by the test folders, and the session's rules on skipped tests.

Tests marked ``needs_root`` skip when not run as root, and fail instead with
``KOA_REQUIRE_ROOT=1`` (:mod:`support.root`). Every skipped test is listed at
the end of the session with its reason; with ``KOA_STRICT_SKIPS=1`` the session
fails if a test skipped for a reason :data:`support.skips.EXPECTED_SKIPS` does
not list. ``.ci/run`` sets both.
"""

from __future__ import annotations

import pytest

from support.archive import KOA_ENVIRONMENT
from support.root import MARK as NEEDS_ROOT
from support.root import check_root
from support.skips import STRICT_ENV, SkipLedger

_skips = SkipLedger()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{NEEDS_ROOT}(why): needs root; fails instead of skipping with KOA_REQUIRE_ROOT=1",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    check_root(item)  # before the test's fixtures start anything


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _skips.note(report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _skips.note(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skips.strict() and _skips.unexpected() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _skips.skips:
        return
    terminalreporter.section("skipped tests")
    for line in _skips.summary_lines():
        terminalreporter.write_line(line)
    unexpected = _skips.unexpected()
    if _skips.strict() and unexpected:
        terminalreporter.write_line(
            f"{len(unexpected)} test(s) skipped for a reason not in "
            f"tests/support/skips.py EXPECTED_SKIPS, and {STRICT_ENV}=1: the session fails. "
            "Make them run, or list the reason there with why the skip hides nothing.",
            red=True,
            bold=True,
        )


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

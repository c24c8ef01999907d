"""Skipped tests: each one listed with its reason, and in CI none but the expected ones.

A skip can hide a failure (a module that no longer imports, a server that did
not start), so with ``KOA_STRICT_SKIPS=1`` (set by ``.ci/run``) a session in
which a test skipped for a reason not in :data:`EXPECTED_SKIPS` fails, and the
unexpected skips are named. ``tests/conftest.py`` wires this in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

__all__ = ["EXPECTED_SKIPS", "STRICT_ENV", "Skip", "SkipLedger"]

STRICT_ENV = "KOA_STRICT_SKIPS"

#: The reasons a test may skip in CI, each with why that skip hides nothing. Tests whose
#: skip CI forbids outright (``KOA_REQUIRE_POSTGRES``, ``KOA_REQUIRE_ROOT``,
#: ``KOA_REQUIRE_BROWSER``: support.postgres, support.root, support.browser) fail there
#: instead, so their reasons are not listed.
EXPECTED_SKIPS: dict[str, str] = {
    "PostgreSQL only: a SQLite read cannot be broken from outside the server": (
        "the [sqlite] case of tests/archive/test_streamed_query.py's broken-read test: the "
        "fault it makes exists only on a PostgreSQL catalog, whose case runs"
    ),
}


@dataclass(frozen=True)
class Skip:
    """One skipped test (or collected module) and why."""

    nodeid: str
    reason: str

    @property
    def expected(self) -> bool:
        return self.reason in EXPECTED_SKIPS


class SkipLedger:
    """The skips of a session, from pytest's reports.

    Examples
    --------
    >>> ledger = SkipLedger()
    >>> ledger.unexpected()
    []
    """

    def __init__(self) -> None:
        self.skips: list[Skip] = []

    @staticmethod
    def strict() -> bool:
        """Whether an unexpected skip fails the session (``KOA_STRICT_SKIPS=1``)."""
        return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")

    def note(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        """Keep ``report`` if it says something was skipped (or was an expected failure)."""
        if not report.skipped:
            return
        if hasattr(report, "wasxfail"):
            reason = f"xfail: {report.wasxfail}"
        elif isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2])
        else:
            reason = str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        self.skips.append(Skip(report.nodeid, reason))

    def unexpected(self) -> list[Skip]:
        """The skips whose reason :data:`EXPECTED_SKIPS` does not list."""
        return [skip for skip in self.skips if not skip.expected]

    def summary_lines(self) -> list[str]:
        """One line per skip: the test, its reason, and whether it was expected."""
        return [
            f"{'expected  ' if skip.expected else 'UNEXPECTED'} {skip.nodeid}: {skip.reason}"
            for skip in self.skips
        ]

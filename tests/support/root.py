"""Tests that need root: skipped without it, failed instead with ``KOA_REQUIRE_ROOT=1``.

Some tests run stores as other accounts, or give files to other users, which
only root may do. On a developer's machine they skip and say why; CI
(``.ci/run``) runs as root and sets ``KOA_REQUIRE_ROOT=1``, so that there a
test that cannot run fails instead of passing unnoticed, as with
``KOA_REQUIRE_POSTGRES`` (:mod:`support.postgres`).

Use the mark (``tests/conftest.py`` acts on it)::

    @pytest.mark.needs_root("to run a store as another account")
    def test_...():
        ...

    pytestmark = pytest.mark.needs_root("to run stores as other accounts of one group")
"""

from __future__ import annotations

import os

import pytest

__all__ = ["MARK", "REQUIRE_ENV", "check_root"]

MARK = "needs_root"
REQUIRE_ENV = "KOA_REQUIRE_ROOT"


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def check_root(item: pytest.Item) -> None:
    """Skip (or fail, when root is required) a test marked ``needs_root`` when not root.

    Raises
    ------
    pytest.skip.Exception, pytest.fail.Exception
        When the test needs root and this process is not root.
    """
    mark = item.get_closest_marker(MARK)
    if mark is None or os.geteuid() == 0:
        return
    why = mark.args[0] if mark.args else "for what it checks"
    reason = f"needs root, {why}"
    if _required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so tests that need root may not be skipped)")
    pytest.skip(reason)

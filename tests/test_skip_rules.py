"""The session's rules on skips (tests/conftest.py), checked on real pytest runs of this suite.

A test that skips for a reason ``support.skips.EXPECTED_SKIPS`` lists passes
in CI; any other skip fails the run when ``KOA_STRICT_SKIPS=1``; each skip is
listed with its reason either way.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support.children import TESTS_DIR

#: A test whose [sqlite] case skips for an expected reason; its [postgres] case skips,
#: unexpectedly, when no PostgreSQL server is configured.
BROKEN_BODY = (
    "tests/archive/test_streamed_query.py::test_catalog_failure_mid_stream_breaks_the_body"
)


def run_pytest(
    test: str, *options: str, workers: str = "0", **settings: str
) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "KOA_STRICT_SKIPS",
            "KOA_REQUIRE_POSTGRES",
            "KOA_TEST_POSTGRES_URL",
            "KOA_REQUIRE_BROWSER",
            "KOA_CHROMIUM",
        )
    }
    env.update(settings)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            test,
            *options,
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            workers,
        ],
        cwd=TESTS_DIR.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_an_expected_skip_is_listed_and_passes():
    result = run_pytest(f"{BROKEN_BODY}[sqlite]", KOA_STRICT_SKIPS="1")
    assert result.returncode == 0, result.stdout
    assert "skipped tests" in result.stdout
    assert f"expected   {BROKEN_BODY}[sqlite]: PostgreSQL only" in result.stdout


@pytest.mark.parametrize("workers", ["0", "2"])  # in one process, and as the suite runs
def test_an_unexpected_skip_fails_a_strict_session_and_is_named(workers):
    result = run_pytest(f"{BROKEN_BODY}[postgres]", workers=workers, KOA_STRICT_SKIPS="1")
    assert result.returncode == 1, result.stdout
    assert f"UNEXPECTED {BROKEN_BODY}[postgres]: PostgreSQL tests need" in result.stdout
    assert "1 test(s) skipped for a reason not in" in result.stdout
    lenient = run_pytest(f"{BROKEN_BODY}[postgres]")
    assert lenient.returncode == 0, lenient.stdout
    assert f"UNEXPECTED {BROKEN_BODY}[postgres]" in lenient.stdout  # listed all the same


def test_browser_tests_skip_without_chromium_and_fail_when_it_is_required(tmp_path):
    test = "tests/browser/test_browser_pages.py"
    missing = str(tmp_path / "no-chromium")
    lenient = run_pytest(test, "-k", "archive-home and loads", KOA_CHROMIUM=missing)
    assert lenient.returncode == 0, lenient.stdout
    assert f"browser tests need Chromium at {missing}" in lenient.stdout
    assert "1 skipped" in lenient.stdout
    required = run_pytest(
        test, "-k", "archive-home and loads", KOA_CHROMIUM=missing, KOA_REQUIRE_BROWSER="1"
    )
    assert required.returncode == 1, required.stdout
    assert "KOA_REQUIRE_BROWSER=1, so browser tests may not be skipped" in required.stdout

"""Commands that work from the cache alone start without the HTTP client.

``koa-cal status`` of a large cache is asked often and should answer at once;
the HTTP client and what it pulls in cost a start about a fifth of a second.
Python's own import log (``PYTHONPROFILEIMPORTTIME``) says what a real
command imported.
"""

from __future__ import annotations

import subprocess

import pytest

from support.koa_cal import cli_env, koa_cal, write_cal

HTTP_MODULES = {"httpx", "httpcore"}


def imported(result: subprocess.CompletedProcess) -> set[str]:
    """The modules a command imported, from Python's import log on its standard error."""
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }


@pytest.fixture
def env(tmp_path):
    env = cli_env(tmp_path, PYTHONPROFILEIMPORTTIME="1")
    mine = write_cal(tmp_path / "in" / "dark.fits", IMAGETYP="DARK", DATE_OBS="2026-02-01T01:00:00",
                     SPECTROG="yJ")  # fmt: skip
    registered = koa_cal("register", str(mine), env=env)
    assert registered.returncode == 0, registered.stderr
    assert not HTTP_MODULES & imported(registered)
    return env


@pytest.mark.parametrize("command", [["status"], ["--json", "status"], ["verify"]])
def test_a_command_of_a_cache_without_an_archive_imports_no_http_client(env, command):
    result = koa_cal(*command, env=env)
    assert result.returncode == 0, result.stderr
    modules = imported(result)
    assert "koa_middleware.store" in modules  # the log is read, and the store was opened
    assert not HTTP_MODULES & modules


def test_a_command_with_an_archive_imports_the_http_client(env):
    # Nothing listens on port 9: the status fails at once, after the client was made.
    result = koa_cal("--url", "http://127.0.0.1:9/api/calibrations", "--retries", "0",
                     "status", env=env)  # fmt: skip
    assert result.returncode == 1
    assert "cannot be reached" in result.stderr
    assert HTTP_MODULES <= imported(result)

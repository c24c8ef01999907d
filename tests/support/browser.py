"""A real Chromium for the browser tests: found or skipped, and required in CI.

The browser tests (tests/browser/) drive Debian's Chromium (``/usr/bin/chromium``,
or the executable ``KOA_CHROMIUM`` names) through Playwright from PyPI, with
``executable_path``: Playwright's own browser downloads are never used. Where
Chromium, Playwright or axe-playwright-python is missing the tests skip and say
which; with ``KOA_REQUIRE_BROWSER=1`` (as ``.ci/run`` sets) they fail instead, as
with ``KOA_REQUIRE_POSTGRES`` and ``KOA_REQUIRE_ROOT``. That is why no browser
reason is listed in :data:`support.skips.EXPECTED_SKIPS`: in CI these tests cannot
skip.

Examples
--------
>>> reason = browser_unavailable()  # doctest: +SKIP
>>> reason is None or "Chromium" in reason or "import" in reason  # doctest: +SKIP
True
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import pytest

logger = logging.getLogger(__name__)

__all__ = [
    "CHROMIUM_ENV",
    "PageWatch",
    "VIEWPORT",
    "DEFAULT_CHROMIUM",
    "REQUIRE_ENV",
    "browser_unavailable",
    "chromium_path",
    "launch_chromium",
    "require_browser",
]

CHROMIUM_ENV = "KOA_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
REQUIRE_ENV = "KOA_REQUIRE_BROWSER"
#: The window every page is opened in (and photographed at): small screenshots.
VIEWPORT = {"width": 1000, "height": 700}
#: The Python packages the browser tests drive Chromium and check accessibility with.
_MODULES = {"playwright": "playwright", "axe_playwright_python": "axe-playwright-python"}


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def chromium_path() -> Path:
    """The Chromium executable to drive: ``KOA_CHROMIUM``, else ``/usr/bin/chromium``."""
    return Path(os.environ.get(CHROMIUM_ENV, "").strip() or DEFAULT_CHROMIUM)


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for module, package in _MODULES.items():
        if importlib.util.find_spec(module) is None:
            return (
                f"browser tests need {package} (cannot import {module}): pip install -e '.[test]'"
            )
    path = chromium_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        return (
            f"browser tests need Chromium at {path} (apt-get install chromium, "
            f"or set {CHROMIUM_ENV} to a Chromium executable)"
        )
    return None


def require_browser() -> Path:
    """The Chromium executable; skip (or fail with ``KOA_REQUIRE_BROWSER=1``) without one.

    Raises
    ------
    pytest.skip.Exception, pytest.fail.Exception
        When Chromium, Playwright or axe-playwright-python is missing.
    """
    reason = browser_unavailable()
    if reason is not None:
        if _required():
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so browser tests may not be skipped)")
        pytest.skip(reason)
    return chromium_path()


def launch_chromium(playwright: Any, executable: Path) -> Any:
    """Start headless Chromium through Playwright.

    Chromium's sandbox cannot start as root, nor in many containers without user
    namespaces: as root it runs with ``--no-sandbox`` from the start; otherwise a
    sandboxed start is tried first and, when it fails, retried without the sandbox.
    """
    options = {"executable_path": str(executable), "headless": True}
    if os.geteuid() == 0:
        return playwright.chromium.launch(**options, args=["--no-sandbox"])
    try:
        return playwright.chromium.launch(**options)
    except Exception as exc:  # Playwright's error type is whatever the driver reports
        logger.warning("Chromium did not start sandboxed (%s); retrying with --no-sandbox", exc)
        return playwright.chromium.launch(**options, args=["--no-sandbox"])


class PageWatch:
    """What went wrong while a page was open: console errors, failed requests."""

    def __init__(self, page: Any):
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            where = message.location.get("url", "")
            self.problems.append(f"console {message.type}: {message.text} ({where})")

    def _failed(self, request: Any) -> None:
        if request.failure == "net::ERR_ABORTED" and not request.is_navigation_request():
            # The browser cancelled it: the page it belonged to was left (a link followed
            # from the keyboard while its favicon loaded). No server or page fault.
            return
        self.problems.append(f"request failed: {request.url} ({request.failure})")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

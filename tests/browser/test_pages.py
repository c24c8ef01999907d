"""Every page in a real Chromium, on the archive's /ui/ and on ``koa-cal ui``.

Each page of :data:`browser.pages.PAGES` loads without a console error or a failed
request, carries the CSP, has no serious or critical axe violation, and is
photographed; each of its keyboard checks runs from a fresh load. Signing in and
out of the token-protected archive is done with the keyboard alone too.
"""

from __future__ import annotations

from typing import Any

import pytest
from browser.pages import PAGES, PageCase, SiteUnderTest, tab_to

from koa_middleware.web import CSP
from support.browser import VIEWPORT, PageWatch

#: axe impacts that fail a page.
FAILING_IMPACTS = ("serious", "critical")

LOADS = [
    pytest.param(kind, case, id=f"{kind}-{case.name}") for case in PAGES for kind in case.sites
]
KEYBOARD = [
    pytest.param(kind, case, check, id=f"{kind}-{case.name}-{check.name}")
    for case in PAGES
    for check in case.keyboard
    for kind in case.sites
    if kind in check.sites
]


def open_page(site: SiteUnderTest, case: PageCase, chromium: Any) -> tuple[Any, Any, Any]:
    """Open ``case`` on ``site``: ``(page, watch, response)``; the page's context to close."""
    context = site.context if case.signed_in else chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    watch = PageWatch(page)
    response = page.goto(case.url(site))
    return page, watch, response


def close_page(page: Any, site: SiteUnderTest) -> None:
    context = page.context
    page.close()
    if context is not site.context:
        context.close()


@pytest.mark.parametrize(("kind", "case"), LOADS)
def test_page_loads_clean_with_the_csp_and_no_serious_axe_violation(
    kind, case, sites, chromium, screenshots
):
    from axe_playwright_python.sync_playwright import Axe

    site = sites[kind]
    page, watch, response = open_page(site, case, chromium)
    try:
        assert response is not None and response.status == 200, case.url(site)
        assert response.headers.get("content-security-policy") == CSP
        assert page.locator("h1").count() == 1
        stylesheet = page.evaluate("getComputedStyle(document.body).fontFamily")
        assert "system-ui" in stylesheet  # the site's own stylesheet was applied
        results = Axe().run(page)
        failing = [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(node["target"]) for node in v["nodes"][:3])
            for v in results.response["violations"]
            if v.get("impact") in FAILING_IMPACTS
        ]
        assert failing == [], failing
        page.screenshot(path=str(screenshots / f"{kind}-{case.name}.png"))
        assert watch.problems == [], watch.problems
    finally:
        close_page(page, site)


@pytest.mark.parametrize(("kind", "case", "check"), KEYBOARD)
def test_keyboard_alone(kind, case, check, sites, chromium):
    site = sites[kind]
    page, watch, _ = open_page(site, case, chromium)
    try:
        check.run(page, site)
        assert watch.problems == [], watch.problems
    finally:
        close_page(page, site)


BROWSE = "/hispec/browse"


def test_sign_in_with_a_token_and_out_again_by_keyboard(archive, fresh_context):
    page = fresh_context.new_page()
    first = page.goto(archive.pages + BROWSE)
    assert first.status == 401  # the page asked for is behind the login form
    assert page.locator("h1").inner_text() == "Sign in"

    tab_to(page, "#token")
    page.keyboard.type("not-a-token")
    page.keyboard.press("Enter")
    page.wait_for_selector("p.problem")
    assert "unknown or revoked" in page.locator("p.problem").inner_text()

    tab_to(page, "#token")
    page.keyboard.type(archive.tokens["read"])
    page.keyboard.press("Enter")
    page.wait_for_url(archive.pages + BROWSE)  # back to the page asked for
    assert "Signed in with token reader" in page.locator("form.logout").inner_text()
    assert page.locator("table.records tbody tr").count() == 50
    cookies = fresh_context.cookies()
    assert cookies and all(archive.tokens["read"] not in c["value"] for c in cookies)
    session = next(c for c in cookies if c["name"] == "koa_ui_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"

    tab_to(page, "form.logout button")
    page.keyboard.press("Enter")
    page.wait_for_url(archive.pages + "/login")
    again = page.goto(archive.pages + BROWSE)
    assert again.status == 401 and page.locator("h1").inner_text() == "Sign in"
    page.close()

"""Every page in a real Chromium, on the archive's /ui/ and on ``koa-cal ui``.

Each page of :data:`browser.pages.PAGES` loads without a console error or a failed
request, carries the CSP, has no serious or critical axe violation, and is
photographed; each of its keyboard checks runs from a fresh load. Signing in and
out of the token-protected archive is done with the keyboard alone too, and so is
retracting a record with a ``write`` token (reason, confirmation page, history) and
making it live again. (That the confirmation refuses a missing or forged CSRF token
is tested over HTTP in tests/web/test_retract_forms.py.)
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


def axe_failures(page: Any) -> list[str]:
    """The serious and critical axe violations of ``page``, one line each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(node["target"]) for node in v["nodes"][:3])
        for v in results.response["violations"]
        if v.get("impact") in FAILING_IMPACTS
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
    site = sites[kind]
    page, watch, response = open_page(site, case, chromium)
    try:
        assert response is not None and response.status == 200, case.url(site)
        assert response.headers.get("content-security-policy") == CSP
        assert page.locator("h1").count() == 1
        stylesheet = page.evaluate("getComputedStyle(document.body).fontFamily")
        assert "system-ui" in stylesheet  # the site's own stylesheet was applied
        assert axe_failures(page) == []
        page.screenshot(path=str(screenshots / f"{kind}-{case.name}.png"))
        assert watch.problems == [], watch.problems
    finally:
        close_page(page, site)


@pytest.mark.parametrize(("kind", "case", "check"), KEYBOARD)
def test_keyboard_alone(kind, case, check, sites, chromium, screenshots):
    site = sites[kind]
    page, watch, _ = open_page(site, case, chromium)
    try:
        check.run(page, site)
        if check.photograph:
            page.screenshot(path=str(screenshots / f"{kind}-{case.name}-{check.name}.png"))
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


def _send_and_wait(page: Any, url: str) -> None:
    page.keyboard.press("Enter")
    page.wait_for_url(url)
    page.wait_for_load_state()


def test_retract_with_confirmation_then_make_live_again_by_keyboard(
    archive, fresh_context, screenshots
):
    page = fresh_context.new_page()
    watch = PageWatch(page)
    page.goto(archive.pages + "/login")
    tab_to(page, "#token")
    page.keyboard.type(archive.tokens["write"])
    _send_and_wait(page, archive.pages + "/")
    record = f"{archive.pages}/{archive.names['instrument']}/records/{archive.names['spare']}"
    page.goto(record)
    assert page.locator("p.problem[role=alert]").count() == 0  # live
    assert axe_failures(page) == []  # the page with its retract form

    reason = "bias drift <after> the cooldown"
    tab_to(page, "#reason")
    page.keyboard.type(reason)
    _send_and_wait(page, record + "/retract")
    assert page.locator("h1").inner_text().startswith("Retract: ")
    assert page.locator("th:text-is('Reason') + td").inner_text() == reason
    assert axe_failures(page) == []
    page.screenshot(path=str(screenshots / "archive-retract-confirm.png"))
    tab_to(page, "main form button[type=submit]")
    _send_and_wait(page, record + "#history-title")
    alert = page.locator("p.problem[role=alert]").inner_text()
    assert alert.startswith("Retracted on ") and alert.endswith(reason), alert
    entry = page.locator("section[aria-labelledby=history-title] li", has_text=reason)
    assert entry.inner_text().startswith("Retracted "), entry.inner_text()

    tab_to(page, "section[aria-labelledby=lifecycle-title] button")
    _send_and_wait(page, record + "/unretract")
    assert page.locator("h1").inner_text().startswith("Make live again: ")
    assert reason in page.locator("th:text-is('Retracted since') + td").inner_text()
    assert axe_failures(page) == []
    tab_to(page, "main form button[type=submit]")
    _send_and_wait(page, record + "#history-title")
    assert page.locator("p.problem[role=alert]").count() == 0
    history = page.locator("section[aria-labelledby=history-title] li").all_inner_texts()
    assert history[-1].startswith("Unretracted (made live again) "), history
    assert page.locator("#reason").is_visible()  # the retract form is back
    assert watch.problems == [], watch.problems
    page.close()

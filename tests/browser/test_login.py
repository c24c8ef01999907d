"""Signing in and out of an archive that needs a token to read, with the keyboard alone."""

from __future__ import annotations

from browser.pages import tab_to

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

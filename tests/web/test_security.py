"""Hostile values escaped on every page, nothing from another origin, login on a token archive."""

from __future__ import annotations

import re
from pathlib import Path

import koa_middleware.web
from koa_middleware.archive.tokens import TokenStore
from koa_middleware.web import CSP
from support.archive import make_record
from support.web_sites import open_site

WEB = Path(koa_middleware.web.__file__).parent
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
JS_URL = "javascript:alert(3)"
#: How a template may begin a link: all are paths of this site.
SAME_SITE_LINKS = ("{{ base }}", "{{ here }}", "{{ query_url", "{{ download", "{{ api_query", "#")
ESC = "\x1b[2Jwiped\x1b]8;;http://evil/\x07"


def assert_harmless(html: str, where: str) -> None:
    assert "<script" not in html.lower(), where
    assert "<img" not in html.lower(), where
    assert not re.search(r"(href|src|action)\s*=\s*\"?\s*javascript:", html, re.I), where
    assert "\x1b" not in html and "\x07" not in html, where


def test_hostile_values_are_escaped_on_every_page(site):
    hostile = make_record(
        filename=IMG + ".fits",
        cal_type=SCRIPT,
        datetime_obs="2024-06-01",
        note=JS_URL,
        comment=SCRIPT + IMG,
    )
    sibling = dict(hostile, id=make_record()["id"], filename="plain.fits", cal_version="002")
    site.add([hostile, sibling])
    site.set_text(hostile["id"], "banner", ESC)
    site.retract(sibling["id"], SCRIPT + " " + IMG)
    cid = hostile["id"]
    pages = [
        "/",
        "/hispec/",
        "/hispec/browse?include_retracted=1",
        f"/hispec/browse?include_retracted=1&cal_type={SCRIPT}",
        f"/hispec/records/{cid}",
        f"/hispec/records/{sibling['id']}",
        "/hispec/changes",
        f"/hispec/browse?origin={IMG}",
        f"/nope{SCRIPT}/",
    ]
    for path in pages:
        response = site.client.get(site.base + path)
        assert response.headers["content-security-policy"] == CSP, path
        assert_harmless(response.text, path)
    record = site.client.get(f"{site.base}/hispec/records/{cid}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in record
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;.fits" in record
    assert "\\x1b[2Jwiped" in record  # the escape shown, not sent
    assert f"<td>{JS_URL}</td>" in record  # text, never a link
    browse = site.client.get(f"{site.base}/hispec/browse?include_retracted=1").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &#34;&gt;&lt;img" in browse  # the reason
    csv_text = site.client.get(f"{site.base}/hispec/browse.csv?include_retracted=1").text
    assert SCRIPT in csv_text  # CSV carries the data as it is, for a program to read


def test_no_template_loads_anything_from_another_origin():
    files = sorted((WEB / "templates").glob("*.html")) + sorted((WEB / "static").glob("*"))
    assert len(files) >= 8
    for path in files:
        # The SVG namespace of the favicon is a name, never fetched.
        text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(?i)(https?:)?//[\w.-]+\.\w", text.replace("/*", "")), path.name
        assert "<script" not in text and "@import" not in text, path.name
        assert " style=" not in text and "<style" not in text, path.name  # CSP: no inline style
        for target in re.findall(r'(?:href|src|action)="([^"]*)"', text):
            assert target.startswith(SAME_SITE_LINKS), (path.name, target)


def test_token_protected_archive_pages_need_a_login(tmp_path):
    with open_site("sqlite", tmp_path, anonymous_read=False) as site:
        site.add([make_record(filename="secret_dark.fits")])
        token = TokenStore(site.backend.engine).create("viewer", "read")
        client = site.client
        refused = client.get("/ui/hispec/browse")
        assert refused.status_code == 401
        assert "secret_dark.fits" not in refused.text and 'name="token"' in refused.text
        assert refused.headers["content-security-policy"] == CSP
        assert client.get("/ui/hispec/browse.csv").status_code == 401
        form = client.get("/ui/login?next=/ui/hispec/browse")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        assert "SameSite=strict" in form.headers["set-cookie"].replace("Strict", "strict")
        forged = client.post("/ui/login", data={"csrf": "forged", "token": token})
        assert forged.status_code == 403
        wrong = client.post("/ui/login", data={"csrf": csrf, "token": "not-a-token"})
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.text
        form = client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        data = {"csrf": csrf, "token": token, "next": "/ui/hispec/browse"}
        done = client.post("/ui/login", data=data)
        assert done.status_code == 303 and done.headers["location"] == "/ui/hispec/browse"
        cookie = done.headers["set-cookie"]
        assert "koa_ui_session=" in cookie and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower() and token not in cookie
        page = client.get("/ui/hispec/browse")
        assert page.status_code == 200 and "secret_dark.fits" in page.text
        assert "Log out" in page.text
        assert client.post("/ui/logout", data={"csrf": "forged"}).status_code == 403
        logout_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert client.post("/ui/logout", data={"csrf": logout_csrf}).status_code == 303
        assert client.get("/ui/hispec/browse").status_code == 401
        # An open redirect is refused: after login, only pages of this site.
        form = client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        data = {"csrf": csrf, "token": token, "next": "//evil.example/"}
        assert client.post("/ui/login", data=data).headers["location"] == "/ui/"
        # A revoked token ends its session.
        TokenStore(site.backend.engine).revoke("viewer")
        assert client.get("/ui/hispec/browse").status_code == 401

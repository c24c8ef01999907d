"""Retracting and making live again from the record page: write scope, CSRF, confirmation,
and the history and changes feed that follow (archive on SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest

from koa_middleware.archive.tokens import TokenStore
from koa_middleware.web import CSP
from support.archive import make_record
from support.web_sites import Site, open_site

ARCHIVES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'


@pytest.fixture(params=ARCHIVES)
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """The archive's pages (anyone reads) over a SQLite or PostgreSQL catalog."""
    with open_site(request.param, tmp_path) as found:
        yield found


def csrf_of(html: str) -> str:
    return unescape(re.search(r'name="csrf" value="([^"]+)"', html).group(1))


def sign_in(site: Site, scope: str) -> None:
    """Log the site's browser in with a new token of ``scope``."""
    token = TokenStore(site.backend.engine).create(f"{scope}-user", scope)
    form = site.client.get("/ui/login")
    assert form.status_code == 200 and 'name="token"' in form.text
    done = site.client.post("/ui/login", data={"csrf": csrf_of(form.text), "token": token})
    assert done.status_code == 303, done.text


def forms(html: str) -> list[str]:
    """The actions of the page's POST forms, other than logging out."""
    found = re.findall(r'<form method="post" action="([^"]+)"', html)
    return [action for action in found if not action.endswith("/logout")]


def a_dark(site: Site) -> dict:
    record = make_record(filename="dark_r1.fits", datetime_obs="2024-02-01")
    site.add([record])
    return record


def test_anonymous_and_read_only_browsers_see_no_form_and_get_403(archive):
    record = a_dark(archive)
    url = f"/ui/hispec/records/{record['id']}"
    page = archive.client.get(url).text
    assert forms(page) == []
    assert "sign in</a> with a token of scope <code>write</code>" in page
    refused = archive.client.post(url + "/retract", data={"csrf": "x", "reason": "no"})
    assert refused.status_code == 403
    assert refused.headers["content-security-policy"] == CSP
    sign_in(archive, "read")
    page = archive.client.get(url).text
    assert "Log out" in page and forms(page) == []
    for action in ("retract", "unretract"):
        data = {"csrf": csrf_of(page), "reason": "no", "confirm": "yes"}
        refused = archive.client.post(f"{url}/{action}", data=data)
        assert refused.status_code == 403 and "scope &#39;write&#39;" in refused.text
    assert archive.backend.get("hispec", record["id"])["retracted_at"] is None


def test_a_token_protected_archive_refuses_an_anonymous_post_with_403(tmp_path):
    with open_site("sqlite", tmp_path, anonymous_read=False) as site:
        record = a_dark(site)
        response = site.client.post(
            f"/ui/hispec/records/{record['id']}/retract", data={"reason": "x"}
        )
        assert response.status_code == 403
        assert site.backend.get("hispec", record["id"])["retracted_at"] is None


def test_a_local_cache_has_no_forms_and_refuses_posts(tmp_path):
    with open_site("cache", tmp_path) as site:
        record = a_dark(site)
        url = f"/ui/hispec/records/{record['id']}"
        page = site.get(f"/hispec/records/{record['id']}").text
        assert forms(page) == [] and "sign in" not in page
        refused = site.client.post(url + "/retract", data={"reason": "x", "confirm": "yes"})
        assert refused.status_code == 403 and "retracted on the archive" in refused.text
        assert site.backend.db.query_id(record["id"]) is not None


def test_retract_asks_to_confirm_with_csrf_then_unretract_and_both_are_in_history(archive):
    record = a_dark(archive)
    url = f"/ui/hispec/records/{record['id']}"
    sign_in(archive, "write")
    page = archive.client.get(url).text
    assert forms(page) == [url + "/retract"]
    csrf = csrf_of(page)
    for bad in ({}, {"csrf": "forged"}):
        refused = archive.client.post(url + "/retract", data={**bad, "reason": "hot pixels"})
        assert refused.status_code == 403 and "expired or came from elsewhere" in refused.text
    asked = archive.client.post(url + "/retract", data={"csrf": csrf, "reason": "hot  pixels"})
    assert asked.status_code == 200
    assert asked.headers["content-security-policy"] == CSP
    assert "Retract: dark_r1.fits?" in asked.text and "<td>hot pixels</td>" in asked.text
    assert 'name="confirm" value="yes"' in asked.text
    assert archive.backend.get("hispec", record["id"])["retracted_at"] is None  # not yet
    forged = {"csrf": "forged", "reason": "hot pixels", "confirm": "yes"}
    assert archive.client.post(url + "/retract", data=forged).status_code == 403
    confirm = {"csrf": csrf_of(asked.text), "reason": "hot pixels", "confirm": "yes"}
    done = archive.client.post(url + "/retract", data=confirm)
    assert done.status_code == 303 and done.headers["location"].startswith(url)
    stored = archive.backend.get("hispec", record["id"])
    assert stored["retract_reason"] == "hot pixels" and stored["retracted_at"]
    # The API's changes feed carries it, as after a retraction through the API.
    feed = archive.client.get("/api/calibrations/hispec/changes", params={"since": 0}).json()
    changed = [r for r in feed["records"] if r["id"] == record["id"]]
    assert changed[0]["retracted_at"] == stored["retracted_at"]

    page = archive.client.get(url).text
    assert forms(page) == [url + "/unretract"]
    asked = archive.client.post(url + "/unretract", data={"csrf": csrf_of(page)})
    assert "Make live again: dark_r1.fits?" in asked.text and "hot pixels" in asked.text
    assert archive.backend.get("hispec", record["id"])["retracted_at"] is not None
    done = archive.client.post(url + "/unretract", data={"csrf": csrf, "confirm": "yes"})
    assert done.status_code == 303
    assert archive.backend.get("hispec", record["id"])["retracted_at"] is None

    history = archive.client.get(url).text.split('id="history-title"', 1)[1]
    steps = re.findall(r"<li><strong>([^<]+)</strong>", history)
    assert steps == ["Published", "Retracted", "Unretracted (made live again)"]
    assert "hot pixels" in history
    changes = archive.client.get("/ui/hispec/changes").text
    assert "Unretracted (made live again)" in changes and "dark_r1.fits" in changes
    earlier = archive.client.get("/ui/hispec/changes", params={"since": 1}).text
    assert '<span class="flag">Retracted</span>' in earlier


def test_the_protocol_answers_keep_their_shape_after_an_unretraction(archive):
    record = a_dark(archive)
    archive.backend.set_lifecycle("hispec", [record["id"]], "bad")
    archive.backend.set_lifecycle("hispec", [record["id"]], None)
    feed = archive.client.get("/api/calibrations/hispec/changes", params={"since": 0}).json()
    (last,) = feed["records"]
    assert last["seq"] == 3 and last["retracted_at"] is None and last["retract_reason"] is None
    assert "change" not in last and "kind" not in last
    queried = archive.client.get("/api/calibrations/hispec/query").json()
    assert [r["id"] for r in queried] == [record["id"]] and "change" not in queried[0]
    events = archive.backend.lifecycle_events("hispec", record["id"])
    assert [(e["seq"], e["kind"], e["reason"]) for e in events] == [
        (2, "retracted", "bad"),
        (3, "unretracted", None),
    ]


def test_reasons_are_checked_and_hostile_ones_escaped(archive):
    record = a_dark(archive)
    url = f"/ui/hispec/records/{record['id']}"
    sign_in(archive, "write")
    csrf = csrf_of(archive.client.get(url).text)
    huge = archive.client.post(url + "/retract", data={"csrf": csrf, "reason": "x" * 10_000_000})
    assert huge.status_code == 413 and len(huge.text) < 20_000
    for reason, expected in (("", "needs a reason"), ("\x1b[2J bad", "control character"),
                             ("y" * 2001, "2,000")):  # fmt: skip
        refused = archive.client.post(url + "/retract", data={"csrf": csrf, "reason": reason})
        assert refused.status_code == 400 and expected in unescape(refused.text), reason
        assert "\x1b" not in refused.text
    hostile = SCRIPT + " " + IMG + " javascript:alert(3)"
    asked = archive.client.post(url + "/retract", data={"csrf": csrf, "reason": hostile})
    assert asked.status_code == 200 and "&lt;script&gt;" in asked.text
    done = archive.client.post(
        url + "/retract", data={"csrf": csrf, "reason": hostile, "confirm": "yes"}
    )
    assert done.status_code == 303
    assert archive.backend.get("hispec", record["id"])["retract_reason"] == hostile
    for path in (url, "/ui/hispec/changes", "/ui/hispec/browse?include_retracted=1"):
        html = archive.client.get(path).text
        assert "<script" not in html.lower() and "<img" not in html.lower(), path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert not re.search(r"(href|src|action)\s*=\s*\"?\s*javascript:", html, re.I), path

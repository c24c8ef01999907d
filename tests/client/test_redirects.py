"""The archive session follows redirects; the credentials go only to the archive's origin.

An archive on object storage answers a download with a redirect to the object
store (another origin): the file must arrive, and the archive token must not.
"""

from __future__ import annotations

import pytest

from koa_middleware.client.auth import BearerToken
from koa_middleware.client.http import ArchiveSession
from support.scripted_http import Exchange, ScriptedHTTPServer, json_answer, raw_answer

TOKEN = "redirect-test-token"


@pytest.fixture
def session():
    session = ArchiveSession(BearerToken(TOKEN), retries=0)
    yield session
    session.close()


def moved_to(location: str, status: int = 307):
    """A route that redirects to ``location``."""

    def answer(ex: Exchange) -> None:
        ex.send(status, b"", headers={"Location": location})

    return answer


def test_redirect_within_the_archive_is_followed_with_the_token(session):
    with ScriptedHTTPServer() as archive:
        archive.route("GET", "/old/lastUpdated", moved_to("/api/lastUpdated"))
        archive.route("GET", "/api/lastUpdated", json_answer({"last_updated": None}))
        response = session.send("GET", archive.url + "/old/lastUpdated", idempotent=True)
        assert response.json() == {"last_updated": None}
        assert [ex.path for ex in archive.exchanges] == ["/old/lastUpdated", "/api/lastUpdated"]
        assert archive.exchanges[1].headers["authorization"] == f"Bearer {TOKEN}"
        assert [earlier.status_code for earlier in response.history] == [307]


def test_redirect_to_another_origin_is_followed_without_the_token(session):
    with ScriptedHTTPServer() as archive, ScriptedHTTPServer() as object_store:
        archive.route("GET", "/files/a", moved_to(object_store.url + "/bucket/a"))
        object_store.route("GET", "/bucket/a", raw_answer(b"calibration bytes", 200, "text/plain"))
        response = session.send("GET", archive.url + "/files/a", idempotent=True)
        assert response.content == b"calibration bytes"
        assert archive.exchanges[0].headers["authorization"] == f"Bearer {TOKEN}"
        assert [ex.path for ex in object_store.exchanges] == ["/bucket/a"]
        assert "authorization" not in object_store.exchanges[0].headers

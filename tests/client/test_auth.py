"""Credentials: token precedence, and the Keck observer login whose cookie is kept and reused.

The Keck login service is played by a tiny, honest login endpoint on a real
local HTTP server: ``POST /login`` checks the form, hands out a random session
cookie and remembers it; the calibrations route accepts only a live session.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from urllib.parse import parse_qs

import pytest

from koa_middleware.auth import (
    Anonymous,
    BearerToken,
    KeckObserverLogin,
    resolve_credentials,
    session_file_path,
)
from koa_middleware.database.remote_database import RemoteCalibrationDB
from koa_middleware.errors import AuthenticationError, ConfigurationError
from support.scripted_http import Exchange, ScriptedHTTPServer

EMAIL = "observer@example.org"
PASSWORD = "correct horse battery staple"
TOKEN = "tok_" + "z" * 40


class KeckLikeService:
    """A login endpoint and one cookie-protected v1 calibrations route."""

    def __init__(self, server: ScriptedHTTPServer):
        self.server = server
        self.sessions: set[str] = set()
        self.logins = 0
        self.bearer_seen: list[str] = []
        server.route("POST", "/login", self.login)
        server.route("GET", "/api/calibrations/hispec/lastUpdated", self.last_updated)

    @property
    def login_url(self) -> str:
        return self.server.url + "/login"

    @property
    def api_url(self) -> str:
        return self.server.url + "/api/calibrations"

    def login(self, ex: Exchange) -> None:
        form = parse_qs(ex.body.decode())
        if form.get("email") != [EMAIL] or form.get("password") != [PASSWORD]:
            ex.send(401, b'{"error": "unauthorized", "message": "Wrong email or password."}')
            return
        self.logins += 1
        session = secrets.token_hex(16)
        self.sessions.add(session)
        ex.send(200, b'{"ok": true}', headers={"Set-Cookie": f"KECK-SESSION={session}; Path=/"})

    def last_updated(self, ex: Exchange) -> None:
        if "authorization" in ex.headers:
            self.bearer_seen.append(ex.headers["authorization"])
        cookies = dict(
            part.strip().split("=", 1)
            for part in ex.headers.get("cookie", "").split(";")
            if "=" in part
        )
        if cookies.get("KECK-SESSION") not in self.sessions:
            ex.send(401, b'{"error": "unauthorized", "message": "Log in first."}')
            return
        ex.send(200, json.dumps({"last_updated": "Thu, 12 Feb 2026 00:00:00 GMT"}).encode())


@pytest.fixture
def keck(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for name in (
        "KOA_API_TOKEN",
        "KECK_OBSERVER_EMAIL",
        "KECK_OBSERVER_PASSWORD",
        "KECK_LOGIN_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    with ScriptedHTTPServer() as server:
        service = KeckLikeService(server)
        monkeypatch.setenv("KECK_OBSERVER_EMAIL", EMAIL)
        monkeypatch.setenv("KECK_OBSERVER_PASSWORD", PASSWORD)
        monkeypatch.setenv("KECK_LOGIN_URL", service.login_url)
        yield service


def test_login_once_and_keep_the_cookie_private(keck, tmp_path):
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        assert remote.get_last_updated() == "2026-02-12T00:00:00.000"
        assert remote.get_last_updated() == "2026-02-12T00:00:00.000"
    assert keck.logins == 1
    path = session_file_path()
    assert path.is_relative_to(tmp_path / "state")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert PASSWORD not in text and EMAIL not in text
    assert any(session in text for session in keck.sessions)


def test_cookie_is_reused_by_another_process(keck, tmp_path):
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        remote.get_last_updated()
    assert keck.logins == 1
    code = (
        "from koa_middleware.database.remote_database import RemoteCalibrationDB\n"
        f"r = RemoteCalibrationDB('hispec', url={keck.api_url!r})\n"
        "print(r.get_last_updated())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2026-02-12T00:00:00.000"
    assert keck.logins == 1


def test_expired_session_logs_in_again(keck):
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        remote.get_last_updated()
        keck.sessions.clear()  # the service forgets every session
        assert remote.get_last_updated() == "2026-02-12T00:00:00.000"
    assert keck.logins == 2
    stored = json.loads(session_file_path().read_text())["cookies"]["KECK-SESSION"]
    assert stored in keck.sessions


def test_loose_cookie_file_is_not_trusted(keck):
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        remote.get_last_updated()
    path = session_file_path()
    path.chmod(0o644)
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        remote.get_last_updated()
    assert keck.logins == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wrong_password_names_the_credential_not_its_value(keck, monkeypatch):
    monkeypatch.setenv("KECK_OBSERVER_PASSWORD", "not-the-password")
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        with pytest.raises(AuthenticationError) as info:
            remote.get_last_updated()
    message = str(info.value)
    assert "KECK_OBSERVER_EMAIL" in message and "not-the-password" not in message
    assert not session_file_path().exists()


def test_token_takes_precedence_over_keck_login(keck, monkeypatch):
    monkeypatch.setenv("KOA_API_TOKEN", TOKEN)
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        assert "KOA_API_TOKEN" in repr(remote) and TOKEN not in repr(remote)
        with pytest.raises(AuthenticationError) as info:
            remote.get_last_updated()  # the Keck-like route wants its cookie
    assert keck.logins == 0
    assert keck.bearer_seen == [f"Bearer {TOKEN}"]
    assert "bearer token from KOA_API_TOKEN" in str(info.value)
    assert TOKEN not in str(info.value)


def test_resolution_order_and_reprs(tmp_path):
    env = {"KOA_API_TOKEN": TOKEN, "KECK_OBSERVER_EMAIL": EMAIL, "KECK_OBSERVER_PASSWORD": PASSWORD}
    assert isinstance(resolve_credentials(environ=env), BearerToken)
    argument = resolve_credentials("arg-token", environ=env)
    assert argument.description == "bearer token from the token argument"
    login = resolve_credentials(environ={k: v for k, v in env.items() if k != "KOA_API_TOKEN"})
    assert isinstance(login, KeckObserverLogin)
    assert PASSWORD not in repr(login) and EMAIL not in repr(login)
    assert TOKEN not in repr(resolve_credentials(environ=env))
    assert isinstance(resolve_credentials(environ={}), Anonymous)
    with pytest.raises(ConfigurationError, match="KECK_OBSERVER_PASSWORD"):
        resolve_credentials(environ={"KECK_OBSERVER_EMAIL": EMAIL})

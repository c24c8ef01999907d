"""Credentials: token precedence, and the Keck observer login as the Keck service speaks it.

The Keck login service is played by :class:`support.keck_service.KeckService`
on a real local HTTP server: ``GET /login/script`` (step 1) hands out a random
``py_uid``, ``GET /userinfo/odb-cookie`` (step 2) turns a live one into the
observer id, and the calibrations route wants the ``observer`` cookie.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from koa_middleware.client.auth import (
    DEFAULT_KECK_LOGIN_URL,
    Anonymous,
    BearerToken,
    KeckObserverLogin,
    KeckSession,
    keck_base_url,
    resolve_credentials,
    session_file_path,
)
from koa_middleware.client.remote_database import RemoteCalibrationDB
from koa_middleware.errors import AuthenticationError, ConfigurationError, RemoteUnavailableError
from support.children import run_child
from support.keck_service import (
    API_PATH,
    KeckService,
    client_log_text,
    configured_keck_service,
    parse_cookies,
)

EMAIL = "observer@example.org"
PASSWORD = "correct horse battery staple"
TOKEN = "tok_" + "z" * 40
LOGIN, USERINFO = "/login/script", "/userinfo/odb-cookie"
ISO = "2026-02-12T00:00:00.000"


@pytest.fixture
def keck(tmp_path, monkeypatch) -> Iterator[KeckService]:
    """A Keck login service, with the observer login configured for it and a private state dir."""
    with configured_keck_service(monkeypatch, tmp_path, EMAIL, PASSWORD) as service:
        yield service


def last_updated(keck: KeckService) -> str | None:
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        return remote.get_last_updated()


def assert_no_secret(keck: KeckService, text: str, *extra: str) -> None:
    assert keck.secrets_in(text) == []
    assert not [value for value in extra if value in text]


def test_first_login_is_step_one_then_step_two_then_the_api_call(keck, tmp_path):
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        assert remote.get_last_updated() == ISO
        assert remote.get_last_updated() == ISO
    assert keck.paths == [LOGIN, USERINFO, API_PATH, API_PATH]
    step1, step2, *calls = keck.server.exchanges
    assert step1.method == "GET" and step1.body == b""
    assert step1.query == {"email": [EMAIL], "password": [PASSWORD], "url": [keck.base_url]}
    (uid,) = keck.uids
    assert parse_cookies(step2.headers["cookie"]) == {"KECK-AUTH-UID": uid}
    for call in calls:
        assert parse_cookies(call.headers["cookie"]) == {"observer": keck.observer_cookie}
    assert keck.logins == 1 and keck.validations == 1

    path = session_file_path()
    assert path.is_relative_to(tmp_path / "state")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert PASSWORD not in text and EMAIL not in text
    kept = json.loads(text)
    assert kept["py_uid"] == uid and kept["observer"] == keck.observer_cookie


def test_session_is_reused_by_another_process(keck):
    assert last_updated(keck) == ISO
    before = len(keck.paths)
    result = run_child("last_updated", keck.api_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ISO
    assert keck.logins == 1  # no new login ...
    assert keck.paths[before:] == [USERINFO, API_PATH]  # ... one step-2 check, then the call
    assert_no_secret(keck, result.stdout + result.stderr)


def test_session_dropped_by_the_service_logs_in_again_once(keck):
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        assert remote.get_last_updated() == ISO
        keck.drop_sessions()
        before = len(keck.paths)
        assert remote.get_last_updated() == ISO
    assert keck.paths[before:] == [API_PATH, LOGIN, USERINFO, API_PATH]
    assert keck.logins == 2
    assert json.loads(session_file_path().read_text())["py_uid"] in keck.uids


def test_threads_refused_together_log_in_again_once(keck):
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        assert remote.get_last_updated() == ISO
        keck.drop_sessions()
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda _: remote.get_last_updated(), range(6)))
    assert answers == [ISO] * 6
    assert keck.logins == 2


def test_kept_session_is_checked_before_reuse(keck):
    assert last_updated(keck) == ISO
    keck.drop_sessions()  # the kept py_uid and observer cookie stop working
    before = len(keck.paths)
    assert last_updated(keck) == ISO
    assert keck.paths[before:] == [USERINFO, LOGIN, USERINFO, API_PATH]
    assert keck.logins == 2


def test_account_needing_a_verification_code_is_told_to_use_a_token(keck):
    keck.require_verification = True
    with pytest.raises(AuthenticationError) as info:
        last_updated(keck)
    message = str(info.value)
    assert "verification code" in message and "KOA_API_TOKEN" in message
    assert "KECK_OBSERVER_EMAIL" in message
    assert_no_secret(keck, message)
    assert keck.paths == [LOGIN]
    assert not session_file_path().exists()


def test_wrong_password_names_the_credential_not_its_value(keck, monkeypatch):
    monkeypatch.setenv("KECK_OBSERVER_PASSWORD", "not-the-password")
    with pytest.raises(AuthenticationError) as info:
        last_updated(keck)
    message = str(info.value)
    assert "refused the email or password" in message and "verification" not in message
    assert "KECK_OBSERVER_EMAIL" in message and "KECK_OBSERVER_PASSWORD" in message
    assert info.value.status == 401
    assert_no_secret(keck, message, "not-the-password")
    assert keck.paths == [LOGIN]
    assert not session_file_path().exists()


def test_no_secret_in_any_log_line_or_error(keck, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        remote.get_last_updated()
        keck.drop_sessions()
        remote.get_last_updated()  # refused, so a second login
    last_updated(keck)  # the kept session, checked first
    errors = []
    keck.require_verification = True
    keck.drop_sessions()
    with pytest.raises(AuthenticationError) as info:
        last_updated(keck)
    errors.append(info.value)
    keck.require_verification = False
    monkeypatch.setenv("KECK_OBSERVER_PASSWORD", "wrong-password")
    session_file_path().unlink()
    with pytest.raises(AuthenticationError) as info:
        last_updated(keck)
    errors.append(info.value)

    text = client_log_text(caplog.records)
    assert "HTTP Request: GET" in text  # the HTTP libraries' records are captured ...
    assert "Keck" in text
    assert LOGIN + "?" not in text  # ... but never the login request's
    for error in errors:
        text += "\n" + "".join(traceback.format_exception(error)) + repr(error)
    assert keck.logins == 2
    assert_no_secret(keck, text, "wrong-password")


def test_plain_http_login_url_is_refused_before_any_request(keck, monkeypatch):
    monkeypatch.setenv("KECK_LOGIN_URL", "http://www3.keck.hawaii.edu")
    with pytest.raises(ConfigurationError) as info:
        RemoteCalibrationDB("hispec", url=keck.api_url)
    assert "KECK_LOGIN_URL" in str(info.value) and "https://" in str(info.value)
    assert_no_secret(keck, str(info.value))
    assert keck.paths == []


@pytest.mark.parametrize(
    ("value", "base"),
    [
        (None, DEFAULT_KECK_LOGIN_URL),
        ("https://www3.keck.hawaii.edu/login/script", DEFAULT_KECK_LOGIN_URL),
        ("https://keck.example.org/proxy/", "https://keck.example.org/proxy"),
        ("http://127.0.0.1:8080/login/script/", "http://127.0.0.1:8080"),
        ("http://127.9.8.7", "http://127.9.8.7"),
        ("http://[::1]:9000", "http://[::1]:9000"),
        ("http://localhost:9000", "http://localhost:9000"),
    ],
)
def test_login_url_is_the_base_url(value, base):
    assert keck_base_url(value) == base


@pytest.mark.parametrize(
    "value",
    [
        "http://www3.keck.hawaii.edu",
        "http://10.0.0.1/login/script",
        "http://127.0.0.1.example.org",
        "ftp://www3.keck.hawaii.edu",
        "https://",
        "https://user:pw@www3.keck.hawaii.edu",
        "https://www3.keck.hawaii.edu/?next=1",
        "https://www3.keck.hawaii.edu:notaport",
    ],
)
def test_unsafe_or_malformed_login_urls_are_refused(value):
    with pytest.raises(ConfigurationError, match="KECK_LOGIN_URL"):
        keck_base_url(value)


def test_login_url_may_still_name_the_login_route(keck, monkeypatch):
    monkeypatch.setenv("KECK_LOGIN_URL", keck.base_url + LOGIN)
    assert last_updated(keck) == ISO
    assert keck.server.exchanges[0].query["url"] == [keck.base_url]


def test_redirect_on_step_one_is_not_followed(keck):
    keck.redirect_login = True
    with pytest.raises(AuthenticationError, match="redirect") as info:
        last_updated(keck)
    assert info.value.status == 302
    assert keck.paths == [LOGIN]  # /login/elsewhere would have handed out a session
    assert keck.logins == 0
    assert not session_file_path().exists()


def test_unreachable_login_service_error_carries_no_url_or_secret(keck, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("KECK_LOGIN_URL", closed)
    with pytest.raises(RemoteUnavailableError) as info:
        last_updated(keck)
    error = info.value
    assert error.__cause__ is None and error.__context__ is None
    text = "".join(traceback.format_exception(error)) + repr(error)
    assert "KECK_LOGIN_URL" in str(error)
    assert LOGIN not in text
    assert_no_secret(keck, text)


def test_loose_session_file_is_not_trusted(keck):
    last_updated(keck)
    path = session_file_path()
    path.chmod(0o644)
    before = len(keck.paths)
    last_updated(keck)
    assert keck.paths[before:] == [LOGIN, USERINFO, API_PATH]  # not even checked
    assert keck.logins == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.needs_root("to give a file to another user")
def test_session_file_of_another_user_is_not_trusted(keck):
    last_updated(keck)
    path = session_file_path()
    os.chown(path, 4242, -1)
    before = len(keck.paths)
    last_updated(keck)
    assert keck.paths[before:] == [LOGIN, USERINFO, API_PATH]
    assert path.stat().st_uid == os.getuid()


def test_token_takes_precedence_over_keck_login(keck, monkeypatch):
    monkeypatch.setenv("KOA_API_TOKEN", TOKEN)
    with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
        assert "KOA_API_TOKEN" in repr(remote) and TOKEN not in repr(remote)
        with pytest.raises(AuthenticationError) as info:
            remote.get_last_updated()  # the Keck route wants its cookie
    assert keck.paths == [API_PATH]  # no login
    assert keck.server.exchanges[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert "bearer token from KOA_API_TOKEN" in str(info.value)
    assert TOKEN not in str(info.value)


def test_resolution_order_and_reprs():
    env = {"KOA_API_TOKEN": TOKEN, "KECK_OBSERVER_EMAIL": EMAIL, "KECK_OBSERVER_PASSWORD": PASSWORD}
    assert isinstance(resolve_credentials(environ=env), BearerToken)
    argument = resolve_credentials("arg-token", environ=env)
    assert argument.description == "bearer token from the token argument"
    login = resolve_credentials(environ={k: v for k, v in env.items() if k != "KOA_API_TOKEN"})
    assert isinstance(login, KeckObserverLogin)
    assert login.login_url == DEFAULT_KECK_LOGIN_URL
    assert PASSWORD not in repr(login) and EMAIL not in repr(login)
    assert TOKEN not in repr(resolve_credentials(environ=env))
    assert isinstance(resolve_credentials(environ={}), Anonymous)
    with pytest.raises(ConfigurationError, match="KECK_OBSERVER_PASSWORD"):
        resolve_credentials(environ={"KECK_OBSERVER_EMAIL": EMAIL})
    session = KeckSession(py_uid="uid-secret", observer_id="4242")
    assert "uid-secret" not in repr(session) and "4242" not in repr(session)
    assert session.cookies == {"observer": "obsid=NDI0Mg=="}


def test_keck_login_is_resolved_once_with_the_settings(keck, tmp_path, monkeypatch):
    from koa_middleware.client.connect import connect_archive
    from koa_middleware.config import resolve_config

    cfg = resolve_config("hispec", tmp_path / "cache", url=keck.api_url)
    # Changed after the settings were resolved: the client must not read them again.
    monkeypatch.setenv("KECK_LOGIN_URL", "https://login.invalid")
    monkeypatch.setenv("KECK_OBSERVER_PASSWORD", "a different password")
    with connect_archive(cfg) as remote:
        assert remote.get_last_updated() == ISO
        assert remote.credentials.description == (
            "Keck observer login from KECK_OBSERVER_EMAIL / KECK_OBSERVER_PASSWORD"
        )
    assert keck.logins == 1

"""KeckObserverAuthClient: the reference API's login client, over the Keck login exchange.

The Keck login service is :class:`support.keck_service.KeckService` on a real
local HTTP server. The class-level session cache is emptied around every test.
"""

from __future__ import annotations

import json
import logging
import stat
import traceback
from collections.abc import Iterator

import httpx
import pytest

import koa_middleware.client.keck_client as keck_client_module
from koa_middleware.client.auth import session_file_path
from koa_middleware.client.keck_client import KeckObserverAuthClient
from koa_middleware.errors import AuthenticationError, ConfigurationError
from support.children import run_child
from support.keck_service import (
    API_PATH,
    KeckService,
    client_log_text,
    configured_keck_service,
    parse_cookies,
)

EMAIL = "pipeline.observer@example.org"
PASSWORD = "Tr0ub4dor&3 but longer"
LOGIN, USERINFO = "/login/script", "/userinfo/odb-cookie"


def _empty_class_cache() -> None:
    cached = KeckObserverAuthClient._cached_session
    KeckObserverAuthClient._cached_session = None
    KeckObserverAuthClient._cached_observer_id = None
    KeckObserverAuthClient._cached_kept = None
    if cached is not None:
        cached.close()


@pytest.fixture(autouse=True)
def empty_class_cache() -> Iterator[None]:
    _empty_class_cache()
    yield
    _empty_class_cache()


@pytest.fixture
def keck(tmp_path, monkeypatch) -> Iterator[KeckService]:
    """A Keck login service, with the observer login configured for it and a private state dir."""
    with configured_keck_service(monkeypatch, tmp_path, EMAIL, PASSWORD) as service:
        yield service


def call_api(client: KeckObserverAuthClient, keck: KeckService) -> httpx.Response:
    return client.session.get(keck.base_url + API_PATH)


def test_public_surface():
    assert keck_client_module.__all__ == ["KeckObserverAuthClient"]
    for name in ("_validate_login", "_perform_login", "_load_cookies", "cookies", "cookies_dict"):
        assert hasattr(KeckObserverAuthClient, name)
    assert KeckObserverAuthClient._cached_session is None


def test_first_construction_logs_in_and_carries_the_observer_cookie(keck, tmp_path):
    client = KeckObserverAuthClient()
    assert keck.paths == [LOGIN, USERINFO]
    assert keck.logins == 1
    assert client.login_url == keck.base_url
    assert client._observer_id == str(keck.observer_id)
    assert isinstance(client.session, httpx.Client)
    assert client.cookies is client.session.cookies
    assert client.cookies_dict == {"observer": keck.observer_cookie}

    answer = call_api(client, keck)
    assert answer.status_code == 200
    assert answer.json() == {"last_updated": "Thu, 12 Feb 2026 00:00:00 GMT"}
    sent = parse_cookies(keck.server.exchanges[-1].headers["cookie"])
    assert sent == {"observer": keck.observer_cookie}

    path = session_file_path()
    assert path.is_relative_to(tmp_path / "state")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert EMAIL not in path.read_text() and PASSWORD not in path.read_text()


def test_constructing_again_in_a_process_asks_nothing(keck):
    first = KeckObserverAuthClient()
    second = KeckObserverAuthClient()
    assert second.session is first.session
    assert second._observer_id == first._observer_id == str(keck.observer_id)
    assert keck.paths == [LOGIN, USERINFO]
    assert KeckObserverAuthClient._cached_observer_id == str(keck.observer_id)
    assert second._validate_login() is True  # the one request here
    assert keck.paths == [LOGIN, USERINFO, USERINFO]


def test_a_new_process_reuses_the_kept_session(keck):
    KeckObserverAuthClient()
    result = run_child("keck_session_get", keck.base_url + API_PATH)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200 Thu, 12 Feb 2026 00:00:00 GMT"
    assert keck.logins == 1
    assert keck.paths == [LOGIN, USERINFO, USERINFO, API_PATH]  # one step-2 check, no login
    assert keck.secrets_in(result.stdout + result.stderr) == []


def test_kept_session_the_service_dropped_means_a_new_login(keck):
    KeckObserverAuthClient()
    keck.drop_sessions()
    _empty_class_cache()  # as a new process would start
    client = KeckObserverAuthClient()
    assert keck.paths == [LOGIN, USERINFO, USERINFO, LOGIN, USERINFO]
    assert keck.logins == 2
    assert call_api(client, keck).status_code == 200
    assert json.loads(session_file_path().read_text())["py_uid"] in keck.uids


def test_reference_steps_report_what_they_found(keck):
    client = KeckObserverAuthClient()
    assert client._validate_login() is True
    assert client._load_cookies() is True
    keck.drop_sessions()
    assert client._validate_login() is False
    observer_id, cookies = client._perform_login()
    assert (observer_id, cookies) == (str(keck.observer_id), {"observer": keck.observer_cookie})
    assert client._validate_login() is True
    session_file_path().unlink()
    assert client._load_cookies() is False
    assert keck.logins == 2


def test_missing_credentials_are_a_configuration_error(keck, monkeypatch):
    monkeypatch.delenv("KECK_OBSERVER_PASSWORD")
    with pytest.raises(ConfigurationError) as info:
        KeckObserverAuthClient()
    assert isinstance(info.value, ValueError)  # what the reference raised
    assert "KECK_OBSERVER_EMAIL" in str(info.value) and "KECK_OBSERVER_PASSWORD" in str(info.value)
    assert keck.paths == []


def test_account_needing_a_verification_code(keck):
    keck.require_verification = True
    with pytest.raises(AuthenticationError) as info:
        KeckObserverAuthClient()
    assert "verification code" in str(info.value) and "KOA_API_TOKEN" in str(info.value)
    assert keck.secrets_in(str(info.value)) == []
    assert KeckObserverAuthClient._cached_session is None


def test_wrong_password(keck, monkeypatch):
    monkeypatch.setenv("KECK_OBSERVER_PASSWORD", "hunter2-wrong")
    with pytest.raises(AuthenticationError, match="refused the email or password") as info:
        KeckObserverAuthClient()
    assert isinstance(info.value, PermissionError)
    assert "hunter2-wrong" not in str(info.value)
    assert keck.secrets_in(str(info.value)) == []
    assert keck.paths == [LOGIN]


def test_plain_http_login_url_is_refused_before_any_request(keck, monkeypatch):
    monkeypatch.setenv("KECK_LOGIN_URL", "http://login.example.org/login/script")
    with pytest.raises(ConfigurationError, match="KECK_LOGIN_URL"):
        KeckObserverAuthClient()
    assert keck.paths == []


def test_login_url_naming_the_login_route_is_cut_back(keck, monkeypatch):
    monkeypatch.setenv("KECK_LOGIN_URL", keck.base_url + LOGIN)
    client = KeckObserverAuthClient()
    assert client.login_url == keck.base_url
    assert keck.server.exchanges[0].query["url"] == [keck.base_url]


def test_redirect_on_step_one_is_not_followed(keck):
    keck.redirect_login = True
    with pytest.raises(AuthenticationError, match="redirect"):
        KeckObserverAuthClient()
    assert keck.paths == [LOGIN]
    assert keck.logins == 0


def test_no_secret_in_any_log_line_repr_or_error(keck, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    client = KeckObserverAuthClient()
    assert call_api(client, keck).status_code == 200
    keck.drop_sessions()
    _empty_class_cache()
    client = KeckObserverAuthClient()  # the kept session is refused: a new login
    monkeypatch.setenv("KECK_OBSERVER_PASSWORD", "hunter2-wrong")
    session_file_path().unlink()
    _empty_class_cache()
    with pytest.raises(AuthenticationError) as info:
        KeckObserverAuthClient()
    text = client_log_text(caplog.records)
    assert "HTTP Request: GET" in text and API_PATH in text  # the API call is logged ...
    assert LOGIN + "?" not in text  # ... the login request never
    text += repr(client) + "".join(traceback.format_exception(info.value))
    assert keck.logins == 2
    assert keck.secrets_in(text) == []
    assert "hunter2-wrong" not in text

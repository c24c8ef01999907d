"""A hostile Keck login service: answers too large, too deep, or with a py_uid no cookie can hold.

Each must be an ``AuthenticationError`` that says what the service sent, never a
``UnicodeEncodeError``, a ``RecursionError`` or an answer read whole into
memory; no session is kept, and no secret is shown.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from koa_middleware.client.auth import session_file_path
from koa_middleware.client.keck_login import MAX_LOGIN_ANSWER_BYTES, keck_login
from koa_middleware.client.remote_database import RemoteCalibrationDB
from koa_middleware.errors import AuthenticationError
from support.keck_service import HUGE_ANSWER_BYTES, KeckService, configured_keck_service

EMAIL = "observer@example.org"
PASSWORD = "correct horse battery staple"
LOGIN, USERINFO = "/login/script", "/userinfo/odb-cookie"


@pytest.fixture
def keck(tmp_path, monkeypatch) -> Iterator[KeckService]:
    with configured_keck_service(monkeypatch, tmp_path, EMAIL, PASSWORD) as service:
        yield service


def refused(keck: KeckService) -> str:
    """The message of the AuthenticationError that getting lastUpdated raises."""
    with pytest.raises(AuthenticationError) as info:
        with RemoteCalibrationDB("hispec", url=keck.api_url) as remote:
            remote.get_last_updated()
    message = str(info.value)
    assert keck.secrets_in(message) == [], message
    assert keck.base_url in message
    assert not session_file_path().exists()
    return message


def test_the_bound_is_a_few_kib():
    assert MAX_LOGIN_ANSWER_BYTES == 64 << 10 < HUGE_ANSWER_BYTES


@pytest.mark.parametrize("mode", ["huge", "huge_streamed"])
@pytest.mark.parametrize("step", ["login", "userinfo"])
def test_an_answer_beyond_the_bound_is_refused(keck, mode, step):
    setattr(keck, f"{step}_mode", mode)
    message = refused(keck)
    assert f"more than {MAX_LOGIN_ANSWER_BYTES:,} bytes" in message
    assert (LOGIN if step == "login" else USERINFO) in message


@pytest.mark.parametrize("step", ["login", "userinfo"])
def test_deep_json_is_refused(keck, step):
    setattr(keck, f"{step}_mode", "deep")
    message = refused(keck)
    assert "nested more than" in message and "levels deep" in message


def test_a_non_ascii_py_uid_is_refused_without_showing_it(keck):
    keck.login_mode = "non_ascii"
    message = refused(keck)
    assert "py_uid" in message and "not printable ASCII" in message
    assert "sesi" not in message
    assert keck.paths == [LOGIN]  # never sent back as a cookie


def test_keck_login_itself_raises_the_authentication_error(keck):
    keck.login_mode = "deep"
    with pytest.raises(AuthenticationError, match="levels deep"):
        keck_login(EMAIL, PASSWORD, keck.base_url)
    keck.login_mode = None
    session = keck_login(EMAIL, PASSWORD, keck.base_url)
    assert session.observer_id == str(keck.observer_id)

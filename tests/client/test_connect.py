"""connect_archive: the client a store's settings describe, with the credential resolved once;
and the DEFAULT / None arguments of RemoteCalibrationDB."""

from __future__ import annotations

import logging

import pytest

from koa_middleware.client.auth import BearerToken
from koa_middleware.client.connect import connect_archive
from koa_middleware.client.remote_database import RemoteCalibrationDB
from koa_middleware.config import DEFAULT, resolve_config, resolve_credential
from koa_middleware.errors import AuthenticationError, ConfigurationError

WRONG = "tok_wrong_" + "x" * 30


def settings(tmp_path, instrument, url, **arguments):
    return resolve_config(instrument, tmp_path / "cache", url=url, **arguments)


def test_token_from_koa_api_token_is_the_one_resolved(
    shared_archive, instrument, tmp_path, monkeypatch
):
    monkeypatch.setenv("KOA_API_TOKEN", shared_archive.tokens["read"])
    cfg = settings(tmp_path, instrument, shared_archive.url(2))
    monkeypatch.setenv("KOA_API_TOKEN", WRONG)  # changed after the settings were resolved
    with connect_archive(cfg) as remote:
        assert remote.get_last_updated() is None  # accepted: the read token was sent
        assert remote.credentials.description == "bearer token from KOA_API_TOKEN"


def test_refused_token_names_koa_api_token_as_its_source(
    shared_archive, instrument, tmp_path, monkeypatch
):
    monkeypatch.setenv("KOA_API_TOKEN", WRONG)
    cfg = settings(tmp_path, instrument, shared_archive.url(2))
    monkeypatch.delenv("KOA_API_TOKEN")  # a client reading it again would go anonymous
    with connect_archive(cfg) as remote, pytest.raises(AuthenticationError) as info:
        remote.get_last_updated()
    assert "bearer token from KOA_API_TOKEN" in str(info.value)
    assert WRONG not in str(info.value)


def test_token_argument_is_named_as_such(shared_archive, instrument, tmp_path):
    cfg = settings(tmp_path, instrument, shared_archive.url(2), token=WRONG)
    with connect_archive(cfg) as remote, pytest.raises(AuthenticationError) as info:
        remote.get_last_updated()
    assert "bearer token from the token argument" in str(info.value)
    assert WRONG not in str(info.value) + repr(remote)


def test_answer_limit_of_the_settings_is_used(shared_archive, instrument, tmp_path, monkeypatch):
    monkeypatch.setenv("KOA_MAX_ANSWER_BYTES", "5MB")
    with connect_archive(settings(tmp_path, instrument, shared_archive.url(2))) as remote:
        assert remote.max_answer_bytes == 5_000_000


def test_keck_default_without_credentials_connects_nothing(tmp_path, instrument, caplog):
    caplog.set_level(logging.INFO)
    assert connect_archive(settings(tmp_path, instrument, None)) is None
    assert "KOA_API_TOKEN" in caplog.text


def test_other_url_without_credentials_connects_anonymously(shared_archive, instrument, tmp_path):
    with connect_archive(settings(tmp_path, instrument, shared_archive.url(2))) as remote:
        assert remote.credentials.description == "no credentials (anonymous access)"
        with pytest.raises(AuthenticationError, match="no credentials"):
            remote.get_last_updated()


# -- RemoteCalibrationDB: DEFAULT, None, credentials= ------------------------------------


@pytest.mark.parametrize("given", [DEFAULT, None], ids=["DEFAULT", "None"])
def test_default_and_none_read_url_and_token_from_the_environment(
    shared_archive, instrument, monkeypatch, given
):
    monkeypatch.setenv("KOA_CALIBRATIONS_URL", shared_archive.url(2))
    monkeypatch.setenv("KOA_API_TOKEN", shared_archive.tokens["read"])
    with RemoteCalibrationDB(instrument, url=given, token=given) as remote:
        assert remote.url == shared_archive.url(2)
        assert remote.credentials.description == "bearer token from KOA_API_TOKEN"
        assert remote.get_last_updated() is None


def test_arguments_left_out_read_the_environment(shared_archive, instrument, monkeypatch):
    monkeypatch.setenv("KOA_CALIBRATIONS_URL", shared_archive.url(2))
    monkeypatch.setenv("KOA_API_TOKEN", shared_archive.tokens["read"])
    with RemoteCalibrationDB(instrument) as remote:
        assert remote.get_last_updated() is None


def test_resolved_credential_is_sent_as_given(shared_archive, instrument, monkeypatch):
    monkeypatch.setenv("KOA_API_TOKEN", WRONG)
    credential = resolve_credential(shared_archive.tokens["read"])
    with RemoteCalibrationDB(instrument, shared_archive.url(2), credentials=credential) as remote:
        assert remote.credentials.description == "bearer token from the token argument"
        assert remote.get_last_updated() is None


def test_ready_made_credentials_are_sent_as_given(shared_archive, instrument):
    token = BearerToken(shared_archive.tokens["read"], source="the site vault")
    with RemoteCalibrationDB(instrument, shared_archive.url(2), credentials=token) as remote:
        assert remote.credentials is token
        assert remote.get_last_updated() is None


def test_token_and_credentials_together_are_refused(shared_archive, instrument):
    credential = resolve_credential(shared_archive.tokens["read"])
    with pytest.raises(ConfigurationError, match="only one"):
        RemoteCalibrationDB(instrument, shared_archive.url(2), "t", credentials=credential)

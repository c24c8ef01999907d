"""Settings: the DEFAULT sentinel, one DEFAULT_URL, one list of default instruments,
and the archive credential chosen once, with where it came from."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import pytest

from koa_middleware import profiles
from koa_middleware.archive import cli_options
from koa_middleware.archive.state import ArchiveSettings
from koa_middleware.client import download, remote_database
from koa_middleware.config import (
    DEFAULT,
    DEFAULT_URL,
    resolve_config,
    resolve_credential,
)

PACKAGE = Path(__file__).resolve().parents[2] / "koa_middleware"
TOKEN = "tok_" + "q" * 40
EMAIL = "observer@example.org"
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _clean_environment(no_koa_environment):
    """Every test starts without KOA settings or credentials."""


def config(tmp_path, **arguments):
    return resolve_config("hispec", tmp_path / "cache", **arguments)


# -- DEFAULT ----------------------------------------------------------------------------


def test_default_shows_as_its_name():
    assert repr(DEFAULT) == "DEFAULT"
    assert str(DEFAULT) == "DEFAULT"


def test_default_stays_one_object_through_pickle_and_copy():
    assert pickle.loads(pickle.dumps(DEFAULT)) is DEFAULT
    assert copy.deepcopy(DEFAULT) is DEFAULT


def test_default_url_reads_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KOA_CALIBRATIONS_URL", "http://127.0.0.1:8123/api")
    cfg = config(tmp_path, url=DEFAULT)
    assert cfg.url == "http://127.0.0.1:8123/api"
    assert cfg.source("url") == "environment (KOA_CALIBRATIONS_URL)"


def test_none_url_reads_the_environment_as_default_does(tmp_path, monkeypatch):
    monkeypatch.setenv("KOA_CALIBRATIONS_URL", "http://127.0.0.1:8123/api")
    assert (
        config(tmp_path, url=None).settings["url"] == config(tmp_path, url=DEFAULT).settings["url"]
    )


def test_default_flag_reads_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KOA_USE_CACHED_CALIBRATIONS", "false")
    cfg = config(tmp_path, use_cached=DEFAULT)
    assert cfg.use_cached is False
    assert cfg.source("use_cached") == "environment (KOA_USE_CACHED_CALIBRATIONS)"


# -- one DEFAULT_URL, one list of instruments ----------------------------------------------


def test_the_keck_url_is_written_once_in_the_package():
    sources = {
        path.relative_to(PACKAGE).as_posix(): path.read_text() for path in PACKAGE.rglob("*.py")
    }
    holding = sorted(path for path, text in sources.items() if "keck.hawaii.edu/api" in text)
    assert holding == ["config.py"]


def test_every_default_url_is_the_one_of_config():
    assert remote_database.DEFAULT_URL is DEFAULT_URL
    assert download.BASE_URL_KECK == DEFAULT_URL + "/"


def test_an_archive_serves_the_default_instruments_unless_told():
    assert ArchiveSettings(root=Path("/nonexistent")).instruments == profiles.DEFAULT_INSTRUMENTS
    assert cli_options.DEFAULT_INSTRUMENTS is profiles.DEFAULT_INSTRUMENTS
    assert profiles.DEFAULT_INSTRUMENTS == ("hispec", "liger")


def test_no_other_list_of_default_instruments_in_the_package():
    pattern = re.compile(r"""\(\s*["']hispec["']\s*,\s*["']liger["']\s*\)""")
    holding = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if pattern.search(path.read_text())
    )
    assert holding == []


# -- the credential ------------------------------------------------------------------------


def test_token_from_the_environment_is_resolved_once(tmp_path, monkeypatch):
    monkeypatch.setenv("KOA_API_TOKEN", TOKEN)
    cfg = config(tmp_path)
    monkeypatch.setenv("KOA_API_TOKEN", "changed-afterwards")
    assert cfg.credential.token == TOKEN
    assert cfg.credential.source == "KOA_API_TOKEN"


def test_token_argument_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KOA_API_TOKEN", TOKEN)
    credential = config(tmp_path, token="from-the-caller").credential
    assert (credential.kind, credential.source, credential.token) == (
        "token",
        "the token argument",
        "from-the-caller",
    )


def test_keck_login_is_chosen_without_a_token(tmp_path, monkeypatch):
    monkeypatch.setenv("KECK_OBSERVER_EMAIL", EMAIL)
    monkeypatch.setenv("KECK_OBSERVER_PASSWORD", PASSWORD)
    monkeypatch.setenv("KECK_LOGIN_URL", "https://login.example.org")
    credential = config(tmp_path).credential
    assert credential.kind == "keck_login"
    assert credential.source == "KECK_OBSERVER_EMAIL / KECK_OBSERVER_PASSWORD"
    assert (credential.email, credential.password) == (EMAIL, PASSWORD)
    assert credential.login_url == "https://login.example.org"


def test_no_credential_is_anonymous(tmp_path):
    credential = config(tmp_path).credential
    assert (credential.kind, credential.source, credential.token) == ("anonymous", "", None)


def test_the_store_settings_and_the_client_rule_choose_alike(tmp_path, monkeypatch):
    environ = {"KOA_API_TOKEN": TOKEN, "KECK_OBSERVER_EMAIL": EMAIL}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert config(tmp_path).credential == resolve_credential(environ=environ)


def test_empty_token_argument_reads_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KOA_API_TOKEN", TOKEN)
    assert config(tmp_path, token="").credential.source == "KOA_API_TOKEN"


def test_no_secret_in_the_reprs(tmp_path, monkeypatch):
    monkeypatch.setenv("KECK_OBSERVER_EMAIL", EMAIL)
    monkeypatch.setenv("KECK_OBSERVER_PASSWORD", PASSWORD)
    cfg = config(tmp_path, token=TOKEN)
    shown = repr(cfg) + repr(cfg.credential) + repr(config(tmp_path).credential)
    shown += "".join(value for _, value, _ in cfg.rows())
    for secret in (TOKEN, EMAIL, PASSWORD):
        assert secret not in shown

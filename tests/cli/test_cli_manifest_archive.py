"""``koa-cal explain --manifest`` records the archive the cache is configured with, as the
Python API's ``store.record_manifest`` does, without its secrets."""

from __future__ import annotations

import json

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import fastapi  # noqa: F401  (a dependency: missing, it must fail, not skip)
import pytest

from koa_middleware.store import CalibrationStore
from support.archive import ArchiveServer, create_token
from support.koa_cal import cli_env, koa_cal, one_error_line, write_cal


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive") / "archive"
    with ArchiveServer(root, instruments=("hispec",)) as server:
        yield server, create_token(server.root, "read")


@pytest.fixture
def env(tmp_path, archive):
    server, token = archive
    env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=server.base_url, KOA_API_TOKEN=token)
    darks = [
        write_cal(tmp_path / "in" / f"dark_{day}.fits", float(day), IMAGETYP="DARK",
                  DATE_OBS=f"2025-03-0{day}T02:00:00", SPECTROG="yJ", INSTERA="era1")
        for day in (1, 2)
    ]  # fmt: skip
    assert koa_cal("register", *map(str, darks), env=env).returncode == 0
    return env


def explain_into(tmp_path, env, manifest) -> dict:
    result = koa_cal("--json", "explain", "--selector", "nearest", "--option", "cal_type=dark",
                     "--meta", "datetime_obs=2025-03-02T03:00:00", "--meta", "spectrograph=yJ",
                     "--meta", "instrument_era=era1", "--manifest", str(manifest),
                     env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(manifest.read_text())


def test_the_manifest_names_the_configured_archive(tmp_path, env, archive, monkeypatch):
    server, token = archive
    document = explain_into(tmp_path, env, tmp_path / "run.json")
    assert document["archive_url"] == server.base_url
    assert len(document["entries"]) == 1
    # The same URL the Python API records for the same settings.
    for name in ("KOA_CALIBRATIONS_URL", "KOA_API_TOKEN"):
        monkeypatch.setenv(name, env[name])
    with CalibrationStore("hispec", str(tmp_path / "api"), sync_on_init=False) as store:
        with store.record_manifest(tmp_path / "api.json") as recorder:
            assert recorder.header["archive_url"] == document["archive_url"]


def test_the_manifest_keeps_no_password_of_the_url(tmp_path, env, archive):
    server, _ = archive
    with_login = server.base_url.replace("http://", "http://observer:s3cret@")
    document = explain_into(tmp_path, {**env, "KOA_CALIBRATIONS_URL": with_login},
                            tmp_path / "run.json")  # fmt: skip
    assert document["archive_url"] == server.base_url
    assert "s3cret" not in (tmp_path / "run.json").read_text()


def test_without_an_archive_the_manifest_names_none(tmp_path, env):
    local = {k: v for k, v in env.items() if k not in ("KOA_CALIBRATIONS_URL", "KOA_API_TOKEN")}
    assert explain_into(tmp_path, local, tmp_path / "run.json")["archive_url"] is None


def test_manifest_fetch_refuses_bytes_other_than_the_pinned_ones(tmp_path, env):
    manifest = tmp_path / "run.json"
    document = explain_into(tmp_path, env, manifest)
    fetched = koa_cal("manifest", "fetch", str(manifest), env=env)
    assert fetched.returncode == 0, fetched.stderr
    document["entries"][0]["chosen"]["file_md5"] = "0" * 32  # pins other bytes than the cache's
    manifest.write_text(json.dumps(document))
    refused = koa_cal("manifest", "fetch", str(manifest), env=env)
    assert refused.returncode == 1, refused.stdout
    line = one_error_line(refused)
    assert "0" * 32 in line and "the run cannot be reproduced" in line

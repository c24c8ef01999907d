"""After ``koa-cal push`` the cache holds what the archive accepted: ``status`` counts
nothing as not pulled and ``sync`` adds nothing, on both protocols."""

from __future__ import annotations

import json

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import fastapi  # noqa: F401  (a dependency: missing, it must fail, not skip)
import pytest

from support.archive import ArchivePair, make_client
from support.koa_cal import cli_env, koa_cal, records_in, write_cal
from support.published import publish

COUNT = 6


@pytest.fixture
def pair(tmp_path):
    with ArchivePair(tmp_path / "archive", ("hispec",)) as pair:
        yield pair


def register_and_push(tmp_path, pair) -> dict[str, str]:
    """Register COUNT darks in a fresh cache and push them over protocol 2; return the env."""
    env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=pair.url(2), KOA_API_TOKEN=pair.tokens["write"])
    files = [
        write_cal(tmp_path / "in" / f"dark_{day:02d}.fits", float(day), IMAGETYP="DARK",
                  DATE_OBS=f"2025-03-{day:02d}T02:00:00", SPECTROG="yJ", INSTERA="era1")
        for day in range(1, COUNT + 1)
    ]  # fmt: skip
    assert koa_cal("register", *map(str, files), env=env).returncode == 0
    pushed = koa_cal("--json", "push", env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["pushed"] == COUNT
    return env


def test_after_a_push_status_and_sync_find_nothing_to_pull(tmp_path, pair, protocol):
    env = register_and_push(tmp_path, pair)
    env = {**env, "KOA_CALIBRATIONS_URL": pair.url(protocol)}
    status = koa_cal("--json", "status", env=env)
    assert status.returncode == 0, status.stderr
    archive = json.loads(status.stdout)["archive"]
    assert (archive["not_pulled"], archive["not_pushed"]) == (0, 0)
    assert "not pulled:          0 records" in koa_cal("status", env=env).stdout

    synced = koa_cal("--json", "sync", env=env)
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["records_added"] == 0

    # What the archive gains afterwards is still pulled.
    with make_client(pair.url(2), "hispec", pair.tokens["write"]) as client:
        newer = publish(client, tmp_path / "published", 1, 1000)
    archive = json.loads(koa_cal("--json", "status", env=env).stdout)["archive"]
    assert archive["not_pulled"] == 1
    synced = koa_cal("--json", "sync", env=env)
    assert json.loads(synced.stdout)["records_added"] == 1
    assert newer[0]["id"] in {r["id"] for r in records_in(env)}


def test_the_cache_keeps_the_archive_s_time_of_each_pushed_record(tmp_path, pair):
    env = register_and_push(tmp_path, pair)
    with make_client(pair.url(2), "hispec", pair.tokens["read"]) as client:
        remote = {r["id"]: r["last_updated"] for r in client.query()}
    local = {r["id"]: r["last_updated"] for r in records_in(env)}
    assert local == remote and len(local) == COUNT

"""``push`` sends only the retractions this cache's ``retract()`` could have made, and counts them.

A member of a shared cache's group can write its database directly: a
retraction of a calibration of another origin (the archive's, KECK) planted
there must stay local, as ``retract()`` would have refused to make it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")

from koa_middleware import CalibrationStore  # noqa: E402
from koa_middleware.database.side_tables import RETRACTIONS_TABLE  # noqa: E402
from support.archive import ArchiveServer, create_token, make_client, publish  # noqa: E402
from support.koa_cal import cli_env, koa_cal  # noqa: E402
from support.models import FileModel, dark  # noqa: E402


@pytest.fixture
def archive(tmp_path):
    with ArchiveServer(tmp_path / "archive", instruments=("hispec",)) as server:
        yield server, create_token(server.root, "write")


def run(*args: str, env: dict[str, str]) -> str:
    result = koa_cal(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_planted_retraction_of_another_origin_is_not_pushed(tmp_path, archive):
    server, token = archive
    with httpx.Client(
        base_url=server.base_url + "/", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        keck = publish(client, os.urandom(3000))  # origin KECK
    env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=server.base_url, KOA_API_TOKEN=token)
    cache = Path(env["KOA_CALIBRATION_CACHE"])
    run("sync", env=env)
    with CalibrationStore("hispec", str(cache), connect_remote=False) as store:
        _, own = store.register_calibration(FileModel(dark(1)))
        assert store.origin == "LOCAL"
    assert "Pushed 1 calibration and 0 retractions" in run("push", env=env)
    run("retract", own["id"], "--reason", "hot pixels", env=env)
    # Another member of the group writes a retraction of the archive's calibration.
    database = sqlite3.connect(cache / "database" / "hispec_calibrations.db")
    with database:
        database.execute(
            f'INSERT INTO "{RETRACTIONS_TABLE}" (id, retracted_at, reason, pushed) '
            "VALUES (?, '2026-01-01T00:00:00.000', 'planted', 0)",
            (keck["id"],),
        )
    database.close()

    result = koa_cal("push", env=env)
    assert result.returncode == 0, result.stderr
    assert "Pushed 0 calibrations and 1 retraction," in result.stdout
    assert keck["id"] in result.stderr  # named in the warning: left local
    with make_client(server.base_url, "hispec", token) as remote:
        assert remote.query(cal_id=keck["id"])["retracted_at"] is None
        assert remote.query(cal_id=own["id"])["retract_reason"] == "hot pixels"
    again = json.loads(run("--json", "push", env=env))
    assert (again["pushed"], again["retractions"]) == (0, [])

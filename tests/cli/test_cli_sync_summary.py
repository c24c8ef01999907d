"""``koa-cal sync`` says what it set aside and which files it skipped, and goes on.

A real koa-archive serves three good calibrations, one record whose file it
does not have (added without a file, as a v1 ``add`` does), and one record no
client can store (planted in its catalog).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import uuid

import fastapi  # noqa: F401  (a dependency: missing, it must fail, not skip)
import httpx
import pytest

from support.archive import ArchiveServer, create_token, upload
from support.koa_cal import cli_env, koa_cal


def record_for(data: bytes, **fields) -> dict:
    cal_id = str(uuid.uuid4())
    record = {
        "id": cal_id,
        "filename": f"cal_{cal_id[:8]}.fits",
        "cal_type": "dark",
        "datetime_obs": "2025-03-01T00:00:00.000",
        "origin": "KECK",
        "cal_version": "001",
        "file_md5": hashlib.md5(data).hexdigest(),
        "file_size": len(data),
    }
    record.update(fields)
    return record


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive") / "archive"
    with ArchiveServer(root, instruments=("hispec", "liger")) as server:
        token = create_token(server.root, "write")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base_url + "/", headers=headers) as client:
            good = []
            for _ in range(3):
                data = os.urandom(3000)
                record = record_for(data)
                assert upload(client, record["id"], data).status_code == 201
                good.append(record)
            no_file = record_for(os.urandom(100))
            bad = record_for(os.urandom(100))
            response = client.post("hispec/add", json=[*good, no_file, bad])
            assert response.status_code == 200, response.text
            # liger: one good calibration and one record without a file, nothing else.
            data = os.urandom(2000)
            liger = [record_for(data), record_for(os.urandom(50))]
            assert upload(client, liger[0]["id"], data, "liger").status_code == 201
            assert client.post("liger/add", json=liger).status_code == 200
        with sqlite3.connect(server.root / "archive.db") as catalog:
            catalog.execute(
                "UPDATE records SET filename = ? WHERE id = ?", ("../escape.fits", bad["id"])
            )
        yield {
            "url": server.base_url,
            "token": create_token(server.root, "read"),
            "good": good,
            "no_file": no_file,
            "bad": bad,
            "liger": liger,
        }


@pytest.fixture
def env(tmp_path, archive):
    return cli_env(tmp_path, KOA_CALIBRATIONS_URL=archive["url"], KOA_API_TOKEN=archive["token"])


def test_sync_json_counts_set_aside_records_and_skipped_files(tmp_path, env, archive):
    result = koa_cal("--json", "sync", "--files", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["records_added"] == 4
    assert data["records_set_aside"] == 1
    assert list(data["set_aside"]) == [archive["bad"]["id"]]
    assert "file name" in data["set_aside"][archive["bad"]["id"]].lower()
    assert data["files_downloaded"] == 3
    assert data["files_skipped"] == 1
    assert list(data["skipped_files"]) == [archive["no_file"]["id"]]
    cached = tmp_path / "cache" / "calibrations" / "hispec"
    assert sorted(p.name for p in cached.iterdir()) == sorted(
        rec["filename"] for rec in archive["good"]
    )
    assert not (tmp_path / "cache" / "calibrations" / "escape.fits").exists()


def test_sync_text_summary_names_what_was_set_aside_and_skipped(env, archive):
    result = koa_cal("sync", "--files", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Pulled 4 new or changed records" in out
    assert "Set aside 1 record that" in out and archive["bad"]["id"] in out
    assert "Downloaded 3 files," in out
    assert "Skipped 1 file the archive" in out and archive["no_file"]["id"] in out
    # The set-aside record is tried again, and still set aside, by the next sync.
    again = json.loads(koa_cal("--json", "sync", env=env).stdout)
    assert again["records_added"] == 0 and again["records_set_aside"] == 1


def test_a_record_without_a_file_does_not_stop_the_files_pass(tmp_path, archive):
    env = cli_env(
        tmp_path,
        KOA_INSTRUMENT_NAME="liger",
        KOA_CALIBRATIONS_URL=archive["url"],
        KOA_API_TOKEN=archive["token"],
    )
    result = koa_cal("--json", "sync", "--files", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    good, no_file = archive["liger"]
    assert (data["records_added"], data["files_downloaded"], data["files_skipped"]) == (2, 1, 1)
    assert list(data["skipped_files"]) == [no_file["id"]]
    assert no_file["id"] in result.stderr  # the warning names it
    assert (tmp_path / "cache" / "calibrations" / "liger" / good["filename"]).is_file()

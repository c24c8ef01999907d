"""``koa-cal status`` against a real archive: ahead, behind, not downloaded; ``koa-cal verify``
telling files not downloaded yet from files lost or damaged."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import fastapi  # noqa: F401  (a dependency: missing, it must fail, not skip)
import pytest

from support.cli_archive import PublishedArchive, cached_files
from support.koa_cal import cli_env, koa_cal, one_error_line, write_cal


@pytest.fixture
def archive(tmp_path):
    with PublishedArchive(tmp_path / "archive", count=13) as archive:
        yield archive


@pytest.fixture
def env(tmp_path, archive):
    return cli_env(tmp_path, KOA_CALIBRATIONS_URL=archive.url, KOA_API_TOKEN=archive.write_token)


def by_time(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (r["datetime_obs"], r["cal_version"], r["filename"]))


def test_status_counts_what_is_ahead_and_behind_the_archive(tmp_path, env, archive):
    assert koa_cal("sync", env=env).returncode == 0
    status = koa_cal("status", env=env)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert "not pushed:          0 records" in lines
    assert "not pulled:          0 records" in lines
    assert "not downloaded:      13 files (koa-cal sync --files fetches them)" in lines
    listed = lines[lines.index("files not downloaded:") + 1 :]
    first_ten = by_time(archive.records)[:10]
    assert listed[:10] == [f"  {r['filename']}  ({r['id']})" for r in first_ten]
    assert listed[10:] == ["  and 3 more"]

    archive.publish(2)
    mine = write_cal(tmp_path / "in" / "arc.fits", IMAGETYP="ARC", DATE_OBS="2026-02-01T01:00:00",
                     SPECTROG="yJ")  # fmt: skip
    assert koa_cal("register", str(mine), env=env).returncode == 0
    data = json.loads(koa_cal("--json", "status", env=env).stdout)
    assert (data["archive"]["not_pulled"], data["archive"]["not_pushed"]) == (2, 1)
    assert data["files_not_downloaded"] == 13 and len(data["missing_files"]) == 13
    text = koa_cal("status", env=env).stdout
    assert "not pushed:          1 record (koa-cal push uploads them)" in text
    assert "not pulled:          2 records (koa-cal sync pulls them)" in text

    assert koa_cal("push", env=env).returncode == 0
    assert koa_cal("sync", "--files", env=env).returncode == 0
    data = json.loads(koa_cal("--json", "status", env=env).stdout)
    assert (data["archive"]["not_pulled"], data["archive"]["not_pushed"]) == (0, 0)
    assert data["files_not_downloaded"] == 0 and data["records"] == 16


def test_verify_tells_not_downloaded_yet_from_lost_or_damaged(tmp_path, env, archive):
    assert koa_cal("sync", env=env).returncode == 0
    fresh = koa_cal("verify", env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert "13 not downloaded yet, 0 lost or damaged" in fresh.stdout
    assert "koa-cal sync --files" in fresh.stdout
    report = json.loads(koa_cal("--json", "verify", env=env).stdout)
    assert (report["checked"], report["ok"], report["problems"]) == (13, 0, [])
    assert len(report["not_downloaded"]) == 13

    assert koa_cal("sync", "--files", env=env).returncode == 0
    lost, damaged = (r["filename"] for r in by_time(archive.records)[:2])
    folder = tmp_path / "cache" / "calibrations" / "hispec"
    (folder / lost).unlink()
    (folder / damaged).write_bytes((folder / damaged).read_bytes()[:-10])
    result = koa_cal("verify", env=env)
    assert result.returncode == 1
    assert "2 files lost or damaged; run koa-cal verify --repair" in one_error_line(result)
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[2:4]}
    assert rows == {lost: "lost", damaged: "damaged"}
    assert "11 intact, 0 not downloaded yet, 2 lost or damaged" in result.stdout
    repaired = koa_cal("verify", "--repair", env=env)
    assert repaired.returncode == 0, repaired.stderr
    assert cached_files(tmp_path / "cache") == {r["filename"] for r in archive.records}


def test_status_asked_again_answers_from_its_kept_count_until_a_file_goes(tmp_path, env, archive):
    assert koa_cal("sync", "--files", env=env).returncode == 0
    cache = tmp_path / "cache"
    past = time.time_ns() - 10 * 10**9  # as if the cache were left alone since
    database = cache / "database" / "hispec_calibrations.db"
    for path in (cache / "calibrations" / "hispec", database, Path(f"{database}-wal")):
        if path.exists():
            os.utime(path, ns=(past, past))
    first = json.loads(koa_cal("--json", "status", env=env).stdout)
    assert first["files_not_downloaded"] == 0
    kept = Path(f"{database}.census")
    memo = json.loads(kept.read_text())
    memo["recorded_bytes"] += 7  # marked, to see that the next status reads it
    kept.write_text(json.dumps(memo))
    again = json.loads(koa_cal("--json", "status", env=env).stdout)
    marked = first["cache_bytes"]["calibrations"] + 7
    assert again["cache_bytes"]["calibrations"] == marked
    assert {**again, "cache_bytes": first["cache_bytes"]} == first
    gone = by_time(archive.records)[4]
    (cache / "calibrations" / "hispec" / gone["filename"]).unlink()
    after = json.loads(koa_cal("--json", "status", env=env).stdout)
    assert [m["id"] for m in after["missing_files"]] == [gone["id"]]
    assert (
        after["cache_bytes"]["calibrations"]
        == first["cache_bytes"]["calibrations"] - (gone["file_size"])
    )

"""koa-cal retract, unretract, remove, prune and manifest, run as a subprocess."""

from __future__ import annotations

import json
import os
from pathlib import Path

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import pytest

from support.koa_cal import cli_env, koa_cal, one_error_line, records_in, write_cal


def dark(folder: Path, day: int) -> Path:
    return write_cal(
        folder / f"dark_{day:02d}.fits",
        float(day),
        IMAGETYP="DARK",
        DATE_OBS=f"2025-03-{day:02d}T02:00:00",
        SPECTROG="yJ",
        INSTERA="era1",
        MASTRCAL=True,
    )


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path)


@pytest.fixture
def registered(tmp_path, env):
    """Darks of March 1, 2 and 3 registered; their ids by day."""
    files = [dark(tmp_path / "in", day) for day in (1, 2, 3)]
    result = koa_cal("--json", "register", *map(str, files), env=env)
    assert result.returncode == 0, result.stderr
    return {day: row["id"] for day, row in zip((1, 2, 3), json.loads(result.stdout), strict=True)}


def explain(tmp_path, env, *extra: str) -> dict:
    frame = tmp_path / "sci.fits"
    if not frame.exists():
        write_cal(frame, IMAGETYP="OBJECT", DATE_OBS="2025-03-02T03:00:00", SPECTROG="yJ",
                  INSTERA="era1")  # fmt: skip
    result = koa_cal("--json", "explain", "--input", str(frame), "--selector", "nearest",
                     "--option", "cal_type=dark", *extra, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_retract_then_explain_chooses_another_and_names_the_reason(tmp_path, env, registered):
    assert explain(tmp_path, env)["chosen"]["id"] == registered[2]
    result = koa_cal("retract", registered[2], "--reason", "hot pixels", env=env)
    assert result.returncode == 0, result.stderr
    assert "Retracted 1 calibration: hot pixels" in result.stdout
    report = explain(tmp_path, env)
    assert report["chosen"]["id"] in (registered[1], registered[3])
    text = koa_cal("explain", "--input", str(tmp_path / "sci.fits"), "--selector", "nearest",
                   "--option", "cal_type=dark", env=env).stdout  # fmt: skip
    assert "retracted" in text and "hot pixels" in text
    assert [(r["id"], r["reason"]) for r in report["retracted"]] == [(registered[2], "hot pixels")]
    refused = koa_cal("get", registered[2], env=env)
    assert refused.returncode == 1
    assert "hot pixels" in one_error_line(refused)
    allowed = koa_cal("get", registered[2], env={**env, "KOA_ALLOW_RETRACTED": "1"})
    assert allowed.returncode == 0 and Path(allowed.stdout.strip()).is_file()
    assert koa_cal("unretract", registered[2], env=env).returncode == 0
    assert explain(tmp_path, env)["chosen"]["id"] == registered[2]


def test_retract_needs_a_reason(env, registered):
    result = koa_cal("retract", registered[1], env=env)
    assert result.returncode == 2 and "--reason" in result.stderr


def test_remove_deletes_a_local_calibration(tmp_path, env, registered):
    result = koa_cal("remove", registered[1], env=env)
    assert result.returncode == 0, result.stderr
    assert registered[1] not in {r["id"] for r in records_in(env)}
    assert not (tmp_path / "cache" / "calibrations" / "hispec" / "dark_01.fits").exists()


def test_prune_keeps_local_files_without_an_archive_and_says_why(env, registered):
    result = koa_cal("prune", "--max-size", "1kB", env=env)
    assert result.returncode == 1
    assert "Kept 3 files of this cache's origin" in result.stdout
    bad = koa_cal("prune", "--max-size", "lots", env=env)
    assert bad.returncode == 1 and "50GiB" in one_error_line(bad)


def test_a_manifest_recorded_by_explain_is_shown_and_verified(tmp_path, env, registered):
    manifest = tmp_path / "run.json"
    report = explain(tmp_path, env, "--manifest", str(manifest))
    shown = koa_cal("manifest", "show", str(manifest), env=env)
    assert shown.returncode == 0, shown.stderr
    assert report["chosen"]["filename"] in shown.stdout and "1 entry" in shown.stdout
    assert koa_cal("manifest", "verify", str(manifest), env=env).returncode == 0
    (tmp_path / "cache" / "calibrations" / "hispec" / report["chosen"]["filename"]).unlink()
    missing = koa_cal("manifest", "verify", str(manifest), env=env)
    assert missing.returncode == 1 and "not downloaded" in missing.stdout


def test_manifest_verify_sees_other_bytes_of_the_same_size(tmp_path, env, registered):
    manifest = tmp_path / "run.json"
    report = explain(tmp_path, env, "--manifest", str(manifest))
    assert koa_cal("manifest", "verify", str(manifest), env=env).returncode == 0
    cached = tmp_path / "cache" / "calibrations" / "hispec" / report["chosen"]["filename"]
    before = cached.stat()
    data = bytearray(cached.read_bytes())
    data[-1] ^= 0xFF  # one byte of the pixels: same size, other bytes
    cached.write_bytes(bytes(data))
    os.utime(cached, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert cached.stat().st_size == before.st_size
    changed = koa_cal("manifest", "verify", str(manifest), env=env)
    assert changed.returncode == 1, changed.stdout
    assert f"the cached file's MD5 is not the pinned {report['chosen']['file_md5']}" in (
        changed.stdout
    )

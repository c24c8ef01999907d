"""``koa-cal register`` reads headers through the instrument profile and tells apart
registered, already cached (same bytes) and skipped (other bytes) files."""

from __future__ import annotations

import json
from pathlib import Path

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import pytest

from support.koa_cal import cli_env, koa_cal, records_in, write_cal


def liger_dark(folder: Path, name: str, camera: str, mode: str, value: float = 1.0) -> Path:
    """A Liger dark whose detector and mode only the Liger profile's header map reads."""
    return write_cal(folder / name, value, IMAGETYP="DARK", DATE_OBS="2025-05-01T01:00:00",
                     CAMERA=camera, OBSMODE=mode)  # fmt: skip


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path, KOA_INSTRUMENT_NAME="liger")


def test_register_reads_headers_through_the_profile(tmp_path, env):
    files = [
        liger_dark(tmp_path / "in", "imager.fits", "imager", "img"),
        liger_dark(tmp_path / "in", "ifs.fits", "ifs", "lenslet"),
    ]
    result = koa_cal("--json", "register", *map(str, files), env=env)
    assert result.returncode == 0, result.stderr
    assert [row["status"] for row in json.loads(result.stdout)] == ["registered", "registered"]
    records = {r["filename"]: r for r in records_in(env)}
    assert (records["imager.fits"]["detector"], records["imager.fits"]["mode"]) == ("imager", "img")
    assert (records["ifs.fits"]["detector"], records["ifs.fits"]["mode"]) == ("ifs", "lenslet")
    assert {r["cal_version"] for r in records.values()} == {"001"}


def test_same_bytes_are_already_cached_other_bytes_are_skipped(tmp_path, env):
    first = liger_dark(tmp_path / "in", "dark.fits", "imager", "img", value=1.0)
    assert koa_cal("register", str(first), env=env).returncode == 0
    copy = tmp_path / "copy" / "dark_copy.fits"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    other = liger_dark(tmp_path / "in", "dark_other.fits", "imager", "img", value=2.0)
    fresh = liger_dark(tmp_path / "in", "dark_ifs.fits", "ifs", "img")

    result = koa_cal("--json", "register", str(copy), str(other), str(fresh), env=env)
    assert result.returncode == 1
    rows = json.loads(result.stdout)  # every file is reported, the skipped one too
    assert [(Path(r["file"]).name, r["status"]) for r in rows] == [
        ("dark_copy.fits", "already cached"),
        ("dark_other.fits", "skipped"),
        ("dark_ifs.fits", "registered"),
    ]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: 1 file skipped") and "--new-version" in last
    assert "WARNING" in result.stderr and str(other) in result.stderr  # the library's warning
    assert sorted(r["filename"] for r in records_in(env)) == ["dark.fits", "dark_ifs.fits"]

    text = koa_cal("register", str(other), env=env)
    assert text.returncode == 1
    assert "skipped" in text.stdout.splitlines()[2]
    newer = koa_cal("--json", "register", "--new-version", str(other), env=env)
    assert newer.returncode == 0, newer.stderr
    assert [(r["status"], r["cal_version"]) for r in json.loads(newer.stdout)] == [
        ("registered", "002")
    ]

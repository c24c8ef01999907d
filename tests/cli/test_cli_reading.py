"""Reading the cache with koa-cal: no cache yet, time order, counts, date bounds, get's text."""

from __future__ import annotations

import json
from pathlib import Path

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import pytest

from support.koa_cal import cli_env, koa_cal, one_error_line, write_cal


def dark(folder: Path, name: str, stamp: str, value: float = 1.0, spec: str = "yJ") -> Path:
    return write_cal(folder / name, value, IMAGETYP="DARK", DATE_OBS=stamp, SPECTROG=spec,
                     INSTERA="era1", MASTRCAL=True)  # fmt: skip


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path)


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["query"],
        ["verify"],
        ["versions"],
        ["versions", "--check"],
        ["explain", "--selector", "nearest", "--option", "cal_type=dark", "--meta", "a=1"],
    ],
)
def test_read_commands_without_a_cache_say_so_and_create_nothing(tmp_path, env, command):
    result = koa_cal(*command, env=env, cwd=tmp_path)
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"No calibration cache for hispec in {tmp_path / 'cache'}" in line
    assert "koa-cal sync" in line and "koa-cal register" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_config_with_nothing_configured_shows_what_is_missing(tmp_path):
    env = cli_env(tmp_path)
    del env["KOA_INSTRUMENT_NAME"], env["KOA_CALIBRATION_CACHE"]
    result = koa_cal("config", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:] if line.strip()}
    assert "missing: pass --instrument or set KOA_INSTRUMENT_NAME" in rows["instrument_name"]
    assert "missing: pass --cache-dir or set KOA_CALIBRATION_CACHE" in rows["cache_dir"]
    assert "<instrument>_calibrations.db" in rows["local_database_filename"]
    assert "Missing: instrument_name, cache_dir" in result.stdout
    data = json.loads(koa_cal("--json", "config", env=env, cwd=tmp_path).stdout)
    assert data["instrument_name"]["value"] == "" and data["profile"]["value"] == ""
    assert data["url"]["source"] == "default"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_listings_are_in_time_order_with_counts_people_read(tmp_path, env):
    folder = tmp_path / "in"
    files = [
        dark(folder, "c.fits", "2025-03-03T05:00:00"),
        dark(folder, "a.fits", "2025-03-01T02:00:00"),
        dark(folder, "b.fits", "2025-03-03T00:00:00", spec="HK"),
        dark(folder, "d.fits", "2025-03-04T00:00:00"),
    ]
    assert koa_cal("register", *map(str, files), env=env).returncode == 0
    table = koa_cal("query", env=env)
    assert [line.split()[1] for line in table.stdout.splitlines()[2:]] == [
        "a.fits", "b.fits", "c.fits", "d.fits",
    ]  # fmt: skip
    assert table.stderr.strip() == "4 records"
    one = koa_cal("query", "--limit", "1", env=env)
    assert one.stderr.strip() == "1 record"
    assert one.stdout.splitlines()[2].split()[1] == "a.fits"

    def names(*args: str) -> list[str]:
        result = koa_cal("--json", "query", *args, env=env)
        assert result.returncode == 0, result.stderr
        return [r["filename"] for r in json.loads(result.stdout)]

    # A date alone: --until includes its whole day, --since starts at its 00:00.
    assert names("--until", "2025-03-03") == ["a.fits", "b.fits", "c.fits"]
    assert names("--since", "2025-03-03") == ["b.fits", "c.fits", "d.fits"]
    assert names("--since", "2025-03-03", "--until", "2025-03-03") == ["b.fits", "c.fits"]
    bad = koa_cal("query", "--until", "2025-02-30", env=env)
    assert bad.returncode == 2 and "--until" in one_error_line(bad)
    families = json.loads(koa_cal("--json", "versions", env=env).stdout)
    assert [f["family"]["datetime_obs"] for f in families] == sorted(
        f["family"]["datetime_obs"] for f in families
    )


def test_get_prints_plain_text_also_on_failure(tmp_path, env):
    known = dark(tmp_path / "in", "a.fits", "2025-03-01T02:00:00")
    assert koa_cal("register", str(known), env=env).returncode == 0
    unknown = "0b4e28ba-2fa1-4d2b-883f-0016d3cca427"
    failed = koa_cal("get", unknown, env=env)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert unknown in one_error_line(failed)
    mixed = koa_cal("get", "a.fits", unknown, env=env)
    assert mixed.returncode == 1
    assert mixed.stdout.splitlines() == [
        str(tmp_path / "cache" / "calibrations" / "hispec" / "a.fits")
    ]
    as_json = json.loads(koa_cal("--json", "get", unknown, env=env).stdout)
    assert as_json[0]["input"] == unknown and "error" in as_json[0]

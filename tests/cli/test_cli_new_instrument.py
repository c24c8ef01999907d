"""A user's mistakes on the command line: a misspelt instrument, a file lacking a required keyword.

``koa-cal --instrument hispek register ...`` must not create a new instrument
cache with the generic profile: a command that would create a cache refuses an
instrument with neither a profile nor a cache, listing the known profiles,
unless ``--new-instrument`` is given. ``koa-cal register`` refuses a HISPEC file
that lacks the spectrograph keyword, naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.koa_cal import cli_env, koa_cal, one_error_line, write_cal

pytest.importorskip("astropy.io.fits")


def a_dark(folder: Path, name: str = "dark.fits", **cards) -> Path:
    cards = {"IMAGETYP": "DARK", "DATE_OBS": "2025-03-03T02:00:00", "SPECTROG": "yJ",
             "INSTERA": "era1", **cards}  # fmt: skip
    return write_cal(folder / name, **{k: v for k, v in cards.items() if v is not None})


def test_a_misspelt_instrument_creates_no_cache(tmp_path):
    env = cli_env(tmp_path)
    dark = a_dark(tmp_path)
    result = koa_cal("--instrument", "hispek", "register", str(dark), env=env)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "'hispek'" in line and "hispec" in line and "liger" in line
    assert "--new-instrument" in line
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "command",
    [["sync"], ["push"], ["get", "00000000-0000-4000-8000-000000000001"], ["verify", "--repair"]],
    ids=["sync", "push", "get", "verify_repair"],
)
def test_every_command_that_creates_a_cache_refuses_an_unknown_instrument(tmp_path, command):
    env = cli_env(tmp_path, KOA_INSTRUMENT_NAME="hispek", KOA_API_TOKEN="tok_" + "x" * 40,
                  KOA_CALIBRATIONS_URL="http://127.0.0.1:9/api/calibrations")  # fmt: skip
    result = koa_cal(*command, env=env)
    assert result.returncode == 1
    assert "'hispek'" in one_error_line(result) and "hispec" in result.stderr
    assert not (tmp_path / "cache").exists()


def test_new_instrument_creates_the_cache(tmp_path):
    env = cli_env(tmp_path, KOA_INSTRUMENT_NAME="kpf")
    dark = a_dark(tmp_path)
    result = koa_cal("--new-instrument", "register", str(dark), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert [row["status"] for row in json.loads(result.stdout)] == ["registered"]
    # Its cache exists now: later commands need no flag.
    again = koa_cal("register", str(a_dark(tmp_path, "dark2.fits", DATE_OBS="2025-03-04")),
                    env=env)  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_an_instrument_with_a_profile_file_needs_no_flag(tmp_path):
    toml = tmp_path / "kpf.toml"
    toml.write_text('instrument = "kpf"\n')
    env = cli_env(tmp_path, KOA_INSTRUMENT_NAME="kpf", KOA_INSTRUMENT_PROFILE=str(toml))
    result = koa_cal("register", str(a_dark(tmp_path)), env=env)
    assert result.returncode == 0, result.stderr


def test_register_refuses_a_hispec_file_without_the_spectrograph_keyword(tmp_path):
    env = cli_env(tmp_path)
    good = a_dark(tmp_path, "good.fits")
    bad = a_dark(tmp_path, "nospec.fits", SPECTROG=None)
    result = koa_cal("register", str(good), str(bad), env=env)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "nospec.fits" in line and "SPECTROG" in line and "--set spectrograph=VALUE" in line
    # Every header is read first: nothing was stored.
    query = koa_cal("query", "--json", env=env)
    assert query.returncode != 0 or json.loads(query.stdout) == []
    fixed = koa_cal("register", "--set", "spectrograph=HK", str(bad), "--json", env=env)
    assert fixed.returncode == 0, fixed.stderr

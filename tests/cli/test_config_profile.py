"""``koa-cal config --profile`` and the guide show the instrument profile in force.

The header keywords of HISPEC and Liger (``SPECTROG``, ``INSTERA``, ``MASTRCAL``,
...) are printed by the command and listed in the guide, both built from the
profiles themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from koa_middleware.profiles import HISPEC, LIGER, PROFILE_ENV
from support.koa_cal import cli_env, koa_cal

ROOT = Path(__file__).resolve().parents[2]

KPF_TOML = """\
instrument = "kpf"
cal_types = ["dark", "flat"]

[families]
default = ["cal_type", "ccd", "datetime_obs"]

[header_map]
ccd = { keywords = ["CCDNAME", "CCD"], type = "str" }

[required]
dark = ["ccd"]
"""


def test_config_profile_shows_the_hispec_header_map(tmp_path):
    result = koa_cal("config", "--profile", env=cli_env(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "instrument:  hispec" in lines
    assert "from:        entry point koa_middleware.profiles:HISPEC" in lines
    assert "cal types:   " + ", ".join(HISPEC.cal_types) in lines
    spectrograph = next(line for line in lines if line.strip().startswith("spectrograph "))
    assert "SPECTROG, SPEC" in spectrograph and "from the profile" in spectrograph
    assert any("INSTERA, ERA" in line for line in lines)
    assert any("MASTRCAL" in line for line in lines)  # from the default map
    assert "  (every type): " + ", ".join(HISPEC.default_family) in lines
    assert not (tmp_path / "cache").exists()  # nothing written, no cache needed


def test_config_profile_json_of_liger(tmp_path):
    env = cli_env(tmp_path, KOA_INSTRUMENT_NAME="liger")
    result = koa_cal("config", "--profile", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["instrument"] == "liger" and data["cal_types"] == list(LIGER.cal_types)
    assert data["families"] == {"default": list(LIGER.default_family)}
    rows = {row["column"]: row for row in data["header_map"]}
    assert rows["detector"]["keywords"] == ["DETECTOR", "CAMERA"]
    assert rows["mode"] == {
        "column": "mode", "keywords": ["OBSMODE", "MODE"], "type": "str", "from": "profile"
    }  # fmt: skip
    assert rows["cal_type"]["from"] == "default"


def test_config_profile_from_a_file_names_it_and_its_required_columns(tmp_path):
    profile = tmp_path / "kpf.toml"
    profile.write_text(KPF_TOML)
    env = cli_env(tmp_path, KOA_INSTRUMENT_NAME="kpf", **{PROFILE_ENV: str(profile)})
    result = koa_cal("config", "--profile", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"from:        {PROFILE_ENV}={profile}" in lines
    assert "  dark: ccd" in lines
    assert any(line.split() == ["ccd", "<-", "CCDNAME,", "CCD", "(str,", "from", "the", "profile)"]
               for line in lines), lines  # fmt: skip


def test_config_profile_needs_the_instrument(tmp_path):
    env = cli_env(tmp_path)
    del env["KOA_INSTRUMENT_NAME"]
    result = koa_cal("config", "--profile", env=env)
    assert result.returncode == 2
    assert "--instrument" in result.stderr and "KOA_INSTRUMENT_NAME" in result.stderr


def test_the_guide_builds_and_lists_the_shipped_header_maps(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(ROOT / "docs"),
         str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    page = (tmp_path / "html" / "profiles.html").read_text()
    for keyword in ("SPECTROG", "INSTERA", "MASTRCAL", "OBSMODE", "CAMERA"):
        assert f'<span class="pre">{keyword}</span>' in page, keyword
    for profile in (HISPEC, LIGER):
        for cal_type, columns in profile.required.items():
            assert all(column in page for column in columns), (cal_type, columns)
        assert all(cal_type in page for cal_type in profile.cal_types)

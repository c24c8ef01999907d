"""One instrument profile for the store, koa-cal and koa-archive ingest alike."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import pytest

from koa_middleware import CalibrationStore
from koa_middleware.fits import FITSCalibration
from koa_middleware.profiles import PROFILE_ENV
from support.archive import archive_command
from support.koa_cal import cli_env, koa_cal, one_error_line, records_in, write_cal

SPECTROGRAPHS = ("yJ", "HK")

DETECTOR_TOML = """\
instrument = "kpf"
cal_types = ["dark", "flat"]

[families]
default = ["cal_type", "detector", "datetime_obs"]

[header_map]
detector = { keywords = ["CCDNAME"], type = "str" }

[required]
dark = ["detector"]
"""


@pytest.fixture(autouse=True)
def no_profile_file(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)


def ingest(root: Path, instrument: str, files: list[Path], **env: str):
    """Run ``koa-archive ingest``; return ``(filename, version)`` per line and the process."""
    base = cli_env(root.parent, **env)
    result = subprocess.run(
        archive_command(
            "ingest", "--root", str(root), "--instrument", instrument, *map(str, files)
        ),
        capture_output=True,
        text=True,
        timeout=120,
        env=base,
    )
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    return [(name, version) for _, name, version in lines], result


def hispec_darks(folder: Path) -> list[Path]:
    """8 nights x 2 spectrographs of master darks; both spectrographs share DATE-OBS per night."""
    paths = []
    for night in range(1, 9):
        for spectrograph in SPECTROGRAPHS:
            paths.append(
                write_cal(
                    folder / f"dark_{spectrograph}_{night}.fits",
                    float(night),
                    INSTRUME="HISPEC",
                    IMAGETYP="DARK",
                    DATE_OBS=f"2025-03-{night:02d}T02:00:00",
                    SPECTROG=spectrograph,
                    INSTERA="era1",
                    MASTRCAL=True,
                    EXPTIME=600.0,
                )
            )
    return paths


def test_config_shows_the_profile_and_where_it_came_from(tmp_path):
    env = cli_env(tmp_path)
    result = koa_cal("config", "--json", env=env)
    assert result.returncode == 0, result.stderr
    profile = json.loads(result.stdout)["profile"]
    assert profile["source"] == "entry point koa_middleware.profiles:HISPEC"
    assert "spectrograph" in profile["value"]

    generic = koa_cal("--instrument", "nirspec", "config", env=env)
    row = next(line for line in generic.stdout.splitlines() if line.startswith("profile"))
    assert row.endswith("built-in default") and "cal_type, datetime_obs" in row

    toml = tmp_path / "kpf.toml"
    toml.write_text(DETECTOR_TOML)
    env[PROFILE_ENV] = str(toml)
    shown = json.loads(koa_cal("--instrument", "kpf", "config", "--json", env=env).stdout)
    assert shown["profile"]["source"] == f"KOA_INSTRUMENT_PROFILE={toml}"

    toml.write_text("instrument = 'kpf'\n[families]\ndefault = ['datetime_obs']\n")
    bad = koa_cal("--instrument", "kpf", "config", env=env)
    assert bad.returncode == 1
    line = one_error_line(bad)
    assert str(toml) in line and "cal_type" in line


def test_sixteen_darks_are_sixteen_families_in_the_store_and_the_archive(tmp_path):
    files = hispec_darks(tmp_path / "incoming")
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        registered = [store.register_calibration(FITSCalibration(p))[1] for p in files]
    assert len({r["id"] for r in registered}) == 16
    assert [r["cal_version"] for r in registered] == ["001"] * 16

    published, result = ingest(tmp_path / "archive", "hispec", files)
    assert result.returncode == 0, result.stderr
    assert published == [(p.name, "001") for p in files]
    # The archive hands out the next version within the same family only.
    again = write_cal(
        tmp_path / "more" / "dark_HK_1_v2.fits",
        IMAGETYP="DARK",
        DATE_OBS="2025-03-01T02:00:00",
        SPECTROG="HK",
        INSTERA="era1",
    )
    published, result = ingest(tmp_path / "archive", "hispec", [again])
    assert published == [("dark_HK_1_v2.fits", "002")], result.stderr


def test_a_toml_profile_rules_the_store_koa_cal_and_koa_archive_alike(tmp_path, monkeypatch):
    toml = tmp_path / "kpf.toml"
    toml.write_text(DETECTOR_TOML)
    files = [
        write_cal(
            tmp_path / "incoming" / f"dark_{ccd}.fits",
            IMAGETYP="DARK",
            DATE_OBS="2025-05-01T01:00:00",
            DETECTOR=ccd,
            CCDNAME=ccd,
        )
        for ccd in ("green", "red")
    ]
    monkeypatch.setenv(PROFILE_ENV, str(toml))
    with CalibrationStore("kpf", str(tmp_path / "store"), connect_remote=False) as store:
        assert store.profile.source == f"KOA_INSTRUMENT_PROFILE={toml}"
        versions = [store.register_calibration(FITSCalibration(p))[1]["cal_version"] for p in files]
    assert versions == ["001", "001"]

    env = cli_env(tmp_path, KOA_INSTRUMENT_NAME="kpf", KOA_INSTRUMENT_PROFILE=str(toml))
    result = koa_cal("register", *map(str, files), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert [row["status"] for row in json.loads(result.stdout)] == ["registered"] * 2
    assert sorted(r["detector"] for r in records_in(env)) == ["green", "red"]
    assert [r["cal_version"] for r in records_in(env)] == ["001", "001"]
    assert koa_cal("versions", "--check", env=env).returncode == 0

    published, result = ingest(tmp_path / "archive", "kpf", files, KOA_INSTRUMENT_PROFILE=str(toml))
    assert result.returncode == 0, result.stderr
    assert published == [("dark_green.fits", "001"), ("dark_red.fits", "001")]

    # Without the profile the two darks are one family: the second, with other bytes, is
    # skipped (exit 1), and the archive numbers it 002.
    (tmp_path / "plain").mkdir()
    plain = cli_env(tmp_path / "plain", KOA_INSTRUMENT_NAME="kpf")
    result = koa_cal("--new-instrument", "register", *map(str, files), "--json", env=plain)
    assert result.returncode == 1
    assert [row["status"] for row in json.loads(result.stdout)] == ["registered", "skipped"]
    assert "--new-version" in result.stderr.strip().splitlines()[-1]
    published, _ = ingest(tmp_path / "plain" / "archive", "kpf", files)
    assert published == [("dark_green.fits", "001"), ("dark_red.fits", "002")]


def test_ingest_reads_the_profile_header_map_and_its_rules(tmp_path):
    toml = tmp_path / "kpf.toml"
    toml.write_text(DETECTOR_TOML)
    mapped = write_cal(
        tmp_path / "in" / "dark_mapped.fits", IMAGETYP="DARK", DATE_OBS="2025-05-01", CCDNAME="red"
    )
    unmapped = write_cal(tmp_path / "in" / "dark_bare.fits", IMAGETYP="DARK", DATE_OBS="2025-05-01")
    arc = write_cal(
        tmp_path / "in" / "arc.fits", IMAGETYP="ARC", DATE_OBS="2025-05-01", CCDNAME="red"
    )
    published, result = ingest(
        tmp_path / "archive", "kpf", [mapped, unmapped, arc], KOA_INSTRUMENT_PROFILE=str(toml)
    )
    assert result.returncode == 1
    assert published == [("dark_mapped.fits", "001")]
    assert "dark_bare.fits" in result.stderr and "must have detector" in result.stderr
    assert "arc.fits" in result.stderr and "'arc' is not one the kpf profile knows" in result.stderr

    toml.write_text("instrument = 'kpf'\n[header_map]\ndetector = {keywords = ['C'], type = 'x'}\n")
    published, result = ingest(
        tmp_path / "archive", "kpf", [mapped], KOA_INSTRUMENT_PROFILE=str(toml)
    )
    assert result.returncode != 0 and published == []
    assert str(toml) in result.stderr


@pytest.mark.slow
def test_demo_cache_has_no_version_issues(tmp_path):
    keep = tmp_path / "demo"
    env = cli_env(tmp_path)
    result = koa_cal("demo", "--keep", str(keep), env=env, cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    for cache in ("cache", "publisher"):
        check = koa_cal("--cache-dir", str(keep / cache), "versions", "--check", env=env)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.strip() == "No version issues."
        listed = koa_cal("--cache-dir", str(keep / cache), "versions", "--json", env=env)
        families = json.loads(listed.stdout)
        assert families and all("spectrograph" in json.dumps(f["family"]) for f in families)

"""koa-cal commands that work on the local cache alone, run as a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import pytest

from koa_middleware.database.local_database import LocalCalibrationDB
from support.koa_cal import (
    cli_env,
    koa_cal,
    one_error_line,
    records_in,
    snapshot,
    write_cal,
)


def dark(folder: Path, day: int, spec: str = "yJ", era: str = "era1", value: float = 1.0) -> Path:
    return write_cal(
        folder / f"dark_{spec.lower()}_{day:02d}.fits",
        value,
        IMAGETYP="DARK",
        DATE_OBS=f"2025-03-{day:02d}T02:00:00",
        SPECTROG=spec,
        INSTERA=era,
        MASTRCAL=True,
    )


def flat(folder: Path, day: int, spec: str = "yJ", era: str = "era1") -> Path:
    return write_cal(
        folder / f"flat_{spec.lower()}_{day:02d}.fits",
        IMAGETYP="FLAT",
        DATE_OBS=f"2025-03-{day:02d}T02:30:00",
        SPECTROG=spec,
        INSTERA=era,
        MASTRCAL=True,
    )


def science(folder: Path, stamp: str = "2025-03-02T10:00:00", spec: str = "yJ") -> Path:
    return write_cal(
        folder / "science.fits", IMAGETYP="OBJECT", DATE_OBS=stamp, SPECTROG=spec, INSTERA="era1"
    )


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path)


@pytest.fixture
def filled(tmp_path, env):
    """A cache holding darks of days 1, 3 (yJ) and 2 (HK) and a flat of day 2."""
    incoming = tmp_path / "incoming"
    files = [dark(incoming, 1), dark(incoming, 3), dark(incoming, 2, "HK"), flat(incoming, 2)]
    result = koa_cal("register", *map(str, files), env=env)
    assert result.returncode == 0, result.stderr
    return files


# -- global behaviour --------------------------------------------------------------


def test_help_and_version(env):
    result = koa_cal("--help", env=env)
    assert result.returncode == 0
    for command in ("config", "status", "sync", "query", "get", "register", "push", "verify",
                    "versions", "explain", "demo"):  # fmt: skip
        assert command in result.stdout
    assert koa_cal("--version", env=env).stdout.startswith("koa-cal, version")


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["--bogus", "status"],
        ["query", "--bogus"],
        ["query", "--format", "xml"],
        ["query", "--source", "elsewhere"],
        ["sync", "--mode", "sometimes"],
        ["get"],
        ["register"],
        ["explain", "--selector", "nearest"],
    ],
)
def test_misuse_exits_2_with_one_line(tmp_path, env, args):
    result = koa_cal(*args, env=env)
    assert result.returncode == 2
    assert "--help" in one_error_line(result)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("command", [["status"], ["query"], ["verify"], ["versions"], ["get", "x"]])
def test_missing_cache_setting_is_one_line_and_writes_nothing(tmp_path, command):
    env = cli_env(tmp_path)
    del env["KOA_CALIBRATION_CACHE"]
    result = koa_cal(*command, env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "KOA_CALIBRATION_CACHE" in one_error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_missing_instrument_setting(tmp_path):
    env = cli_env(tmp_path)
    del env["KOA_INSTRUMENT_NAME"]
    result = koa_cal("status", env=env)
    assert result.returncode == 1
    assert "KOA_INSTRUMENT_NAME" in one_error_line(result)
    given = koa_cal("--instrument", "hispec", "status", env=env)
    assert given.returncode == 1 and "No calibration cache for hispec" in one_error_line(given)


def test_debug_shows_the_traceback(tmp_path):
    env = cli_env(tmp_path)
    del env["KOA_CALIBRATION_CACHE"]
    plain = koa_cal("status", env=env)
    assert "Traceback" not in plain.stderr
    debug = koa_cal("--debug", "status", env=env)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("Error: ")


# -- config --------------------------------------------------------------------


def test_config_shows_values_sources_and_masks_secrets(tmp_path, env):
    env = dict(env, KOA_API_TOKEN="secret-token-value", KOA_CALIBRATION_ORIGIN="keck")
    result = koa_cal("--instrument", "HISPEC", "--url", "http://127.0.0.1:1/api", "config", env=env)
    assert result.returncode == 0, result.stderr
    assert "secret-token-value" not in result.stdout
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert "argument" in lines["instrument_name"] and "hispec" in lines["instrument_name"]
    assert "environment (KOA_CALIBRATION_CACHE)" in lines["cache_dir"]
    assert "KECK" in lines["origin"] and "KOA_CALIBRATION_ORIGIN" in lines["origin"]
    assert "http://127.0.0.1:1/api" in lines["url"] and "argument" in lines["url"]
    assert "****" in lines["token"]
    data = json.loads(koa_cal("--json", "config", env=env).stdout)
    assert data["token"] == {"value": "****", "source": "environment (KOA_API_TOKEN)"}
    assert data["local_database_filename"]["value"] == "hispec_calibrations.db"
    assert data["local_database_filename"]["source"] == "default"
    assert json.loads(koa_cal("config", "--json", env=env).stdout) == data
    assert not (tmp_path / "cache").exists()  # config writes nothing


# -- register --------------------------------------------------------------------


def test_register_and_query(tmp_path, env, filled):
    records = records_in(env)
    assert sorted(r["filename"] for r in records) == sorted(p.name for p in filled)
    assert {r["cal_type"] for r in records} == {"dark", "flat"}
    assert all(r["cal_version"] == "001" and r["origin"] == "LOCAL" for r in records)
    cached = tmp_path / "cache" / "calibrations" / "hispec" / filled[0].name
    assert cached.read_bytes() == filled[0].read_bytes()


def test_register_again_new_version_origin_and_overrides(tmp_path, env, filled):
    again = koa_cal("--json", "register", str(filled[0]), env=env)
    assert json.loads(again.stdout)[0]["status"] == "already cached"
    # a reprocessed copy under another name, as a new version of the same family
    reprocessed = dark(tmp_path / "v2", 1, value=2.0)
    reprocessed = reprocessed.rename(reprocessed.with_name("dark_yj_01_v2.fits"))
    result = koa_cal("--json", "register", "--new-version", str(reprocessed), env=env)
    row = json.loads(result.stdout)[0]
    assert (row["status"], row["cal_version"]) == ("registered", "002")
    bare = write_cal(tmp_path / "bare.fits", DATE_OBS="2025-03-09T00:00:00")
    result = koa_cal(
        "register", "--cal-type", "BIAS", "--origin", "keck", "--set", "spectrograph=HK",
        str(bare), env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = next(r for r in records_in(env) if r["filename"] == "bare.fits")
    assert (record["cal_type"], record["origin"], record["spectrograph"]) == ("bias", "KECK", "HK")


def test_register_bad_files_writes_nothing(tmp_path, env, filled):
    before_files = snapshot(tmp_path / "cache" / "calibrations")
    before_records = records_in(env)
    good = dark(tmp_path / "more", 5)
    no_keywords = write_cal(tmp_path / "more" / "nokw.fits", SPECTROG="yJ")
    not_fits = tmp_path / "more" / "notes.fits"
    not_fits.write_text("just some text\n")

    result = koa_cal("register", str(good), str(no_keywords), env=env)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "nokw.fits" in line and "IMAGETYP" in line and "DATE-OBS" in line
    assert "--cal-type" in line

    result = koa_cal("register", str(good), str(not_fits), env=env)
    assert result.returncode == 1
    assert "not a readable FITS file" in one_error_line(result)

    result = koa_cal("register", "--set", "a b=1", str(good), env=env)
    assert result.returncode == 2
    one_error_line(result)

    assert snapshot(tmp_path / "cache" / "calibrations") == before_files
    assert records_in(env) == before_records


def test_register_bad_file_on_a_fresh_machine_creates_no_cache(tmp_path, env):
    not_fits = tmp_path / "x.fits"
    not_fits.write_bytes(b"\x00" * 100)
    result = koa_cal("register", str(not_fits), env=env)
    assert result.returncode == 1
    one_error_line(result)
    assert not (tmp_path / "cache").exists()


# -- query ---------------------------------------------------------------------


def test_query_filters_and_formats(env, filled):
    def names(*args):
        result = koa_cal("query", "--format", "json", *args, env=env)
        assert result.returncode == 0, result.stderr
        return sorted(r["filename"] for r in json.loads(result.stdout))

    assert names("--cal-type", "flat") == ["flat_yj_02.fits"]
    assert names("--cal-type", "dark", "--where", "spectrograph=HK") == ["dark_hk_02.fits"]
    assert names("--since", "2025-03-02", "--until", "2025-03-02T23:59") == [
        "dark_hk_02.fits",
        "flat_yj_02.fits",
    ]
    assert names("--origin", "local", "--where", "master_cal=1", "--where", "instrument_era=era1")
    typo = koa_cal("query", "--where", "datetime_start=2025-03-02", env=env)
    assert typo.returncode == 2  # misuse, with the columns there are
    assert "datetime_start" in typo.stderr and "datetime_obs" in typo.stderr
    assert len(names("--origin", "KECK")) == 0

    table = koa_cal("query", "--cal-type", "dark", env=env)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["id", "filename", "cal_type"]
    assert len(table.stdout.splitlines()) == 2 + 3
    assert table.stderr.strip() == "3 records"

    rows = list(csv.DictReader(io.StringIO(koa_cal("query", "--format", "csv", env=env).stdout)))
    assert len(rows) == 4 and "spectrograph" in rows[0] and "file_md5" in rows[0]
    narrow = koa_cal("query", "--format", "csv", "--columns", "filename,cal_version", env=env)
    assert narrow.stdout.splitlines()[0] == "filename,cal_version"
    assert len(json.loads(koa_cal("--json", "query", "--limit", "2", env=env).stdout)) == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--where", "cal_type; DROP TABLE hispec=1"],
        ["--where", "a b=1"],
        ["--where", "novalue"],
        ["--columns", "filename,bad column"],
    ],
)
def test_query_bad_where_is_misuse_and_changes_nothing(tmp_path, env, filled, args):
    before = records_in(env)
    result = koa_cal("query", *args, env=env)
    assert result.returncode == 2
    one_error_line(result)
    assert records_in(env) == before


# -- status, verify, versions, get -----------------------------------------------


def test_status(tmp_path, env, filled):
    data = json.loads(koa_cal("--json", "status", env=env).stdout)
    assert data["records"] == 4
    counts = {(r["cal_type"], r["origin"]): r["count"] for r in data["by_type_origin"]}
    assert counts == {("dark", "LOCAL"): 3, ("flat", "LOCAL"): 1}
    assert data["missing_files"] == [] and data["files_not_downloaded"] == 0
    assert data["archive"]["url"] is None
    assert data["cache_bytes"]["calibrations"] == sum(p.stat().st_size for p in filled)
    assert data["local_last_updated"] == max(r["last_updated"] for r in records_in(env))
    (tmp_path / "cache" / "calibrations" / "hispec" / filled[1].name).unlink()
    text = koa_cal("status", env=env)
    assert text.returncode == 0
    assert "not downloaded:      1 file " in text.stdout and filled[1].name in text.stdout
    assert "no archive configured" in text.stdout


def test_verify_finds_missing_and_corrupt_files(tmp_path, env, filled):
    assert koa_cal("verify", env=env).returncode == 0
    folder = tmp_path / "cache" / "calibrations" / "hispec"
    (folder / filled[0].name).unlink()
    corrupt = folder / filled[1].name
    placed = corrupt.stat()
    data = bytearray(corrupt.read_bytes())
    data[-1] ^= 0xFF  # same size, different MD5
    corrupt.write_bytes(bytes(data))
    # Same inode and mtime too: verify reads the bytes, it does not trust the stat.
    os.utime(corrupt, ns=(placed.st_atime_ns, placed.st_mtime_ns))
    after = corrupt.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        placed.st_size,
        placed.st_mtime_ns,
        placed.st_ino,
    )
    before = records_in(env)
    result = koa_cal("verify", env=env)
    assert result.returncode == 1
    assert "verify --repair" in one_error_line(result)
    assert filled[0].name in result.stdout and filled[1].name in result.stdout
    report = json.loads(koa_cal("--json", "verify", env=env).stdout)
    problems = {p["filename"]: p["problem"] for p in report["problems"]}
    assert problems == {filled[0].name: "missing", filled[1].name: "corrupt"}
    assert (report["checked"], report["ok"], report["unrepaired"]) == (4, 2, 2)
    repair = koa_cal("verify", "--repair", env=env)  # no archive to repair from
    assert repair.returncode == 1
    assert records_in(env) == before


def test_versions_and_check(tmp_path, env, filled):
    families = json.loads(koa_cal("--json", "versions", env=env).stdout)
    assert len(families) == 4 and all(f["versions"] == ["001"] for f in families)
    result = koa_cal("versions", "--check", env=env)
    assert result.returncode == 0 and "No version issues" in result.stdout
    # a second record claiming version 001 of an existing family
    existing = records_in(env)[0]
    db = LocalCalibrationDB(tmp_path / "cache" / "database" / "hispec_calibrations.db", "hispec")
    twin = dict(existing, id="0b4e28ba-2fa1-4d2b-883f-0016d3cca427", filename="twin.fits")
    db.add(twin)
    db.close()
    result = koa_cal("versions", "--check", env=env)
    assert result.returncode == 1
    assert "1 version issue found" in one_error_line(result)
    assert "duplicate" in result.stdout and twin["id"] in result.stdout
    issues = json.loads(koa_cal("--json", "versions", "--check", env=env).stdout)
    assert [i["issue"] for i in issues] == ["duplicate"]


def test_get_local_by_id_and_filename(tmp_path, env, filled):
    records = {r["filename"]: r for r in records_in(env)}
    cal_id = records[filled[0].name]["id"]
    result = koa_cal("get", cal_id, filled[1].name, env=env)
    assert result.returncode == 0, result.stderr
    paths = result.stdout.splitlines()
    folder = tmp_path / "cache" / "calibrations" / "hispec"
    assert paths == [str(folder / filled[0].name), str(folder / filled[1].name)]
    missing = koa_cal("get", "0b4e28ba-2fa1-4d2b-883f-0016d3cca427", env=env)
    assert missing.returncode == 1
    assert "no archive is configured" in one_error_line(missing)
    data = json.loads(koa_cal("--json", "get", filled[2].name, env=env).stdout)
    assert data[0]["path"] == str(folder / filled[2].name)


# -- explain ---------------------------------------------------------------------


def test_explain_with_a_frame_file(tmp_path, env, filled):
    frame = science(tmp_path)
    result = koa_cal(
        "explain", "--selector", "nearest", "--option", "cal_type=dark", "--input", str(frame),
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # day 3 02:00 is 16 h after the frame (day 2 10:00), day 1 02:00 is 32 h before
    assert "chosen:   dark_yj_03.fits" in result.stdout
    assert "nearest in time" in result.stdout
    # both yJ darks were candidates; the HK one was not
    assert "dark_yj_01.fits" in result.stdout and "dark_yj_03.fits" in result.stdout
    assert "dark_hk_02.fits" not in result.stdout
    report = json.loads(
        koa_cal("--json", "explain", "--selector", "koa_middleware.selectors:NearestInTimeSelector",
                "--option", "cal_type=dark", "--input", str(frame), env=env).stdout
    )  # fmt: skip
    assert report["chosen"]["filename"] == "dark_yj_03.fits"
    assert [c["filename"] for c in report["candidates"]] == ["dark_yj_03.fits", "dark_yj_01.fits"]


def test_explain_with_metadata_and_an_empty_result(tmp_path, env, filled):
    base = ["explain", "--selector", "latest", "--option", "cal_type=flat",
            "--option", "validity_days=0.5", "--meta", "spectrograph=yJ",
            "--meta", "instrument_era=era1"]  # fmt: skip
    chosen = koa_cal(*base, "--meta", "datetime_obs=2025-03-02T06:00", env=env)
    assert chosen.returncode == 0, chosen.stderr
    assert "latest version 001" in chosen.stdout
    empty = koa_cal(*base, "--meta", "datetime_obs=2025-03-05T06:00", env=env)
    assert empty.returncode == 1
    assert "within 0.5 d of the frame eliminated the last 1 candidate(s)" in one_error_line(empty)
    assert "conditions applied one after another" in empty.stdout
    report = json.loads(
        koa_cal("--json", *base, "--meta", "datetime_obs=2025-03-05T06:00", env=env).stdout
    )
    assert report["eliminated_by"]["eliminated_by"] == "within 0.5 d of the frame"


def test_explain_with_a_custom_selector_module(tmp_path, env, filled):
    env = dict(env, PYTHONPATH=str(Path(__file__).parent / "user_selectors"))
    result = koa_cal("--json", "explain", "--selector", "any_flat:AnyFlat", "--meta",
                     "datetime_obs=2025-03-02", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["chosen"]["filename"] == "flat_yj_02.fits"
    assert report["selector"] == "any_flat:AnyFlat"


@pytest.mark.parametrize(
    "args",
    [
        ["--selector", "nearest", "--option", "cal_type=dark"],  # no input
        ["--selector", "nearest", "--option", "cal_type=dark", "--meta", "a=1", "--input", "x"],
        ["--selector", "no.such.module:Thing", "--meta", "a=1"],
        ["--selector", "koa_middleware.selectors:Condition", "--meta", "a=1"],
        ["--selector", "nearest", "--meta", "a=1"],  # cal_type missing
        ["--selector", "nearest", "--option", "cal_type=dark", "--option", "max_days=-3",
         "--meta", "a=1"],
        ["--selector", "justaname", "--meta", "a=1"],
    ],
)  # fmt: skip
def test_explain_misuse(tmp_path, env, filled, args):
    result = koa_cal("explain", *args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    one_error_line(result)


def test_explain_frame_without_needed_metadata(tmp_path, env, filled):
    result = koa_cal("explain", "--selector", "nearest", "--option", "cal_type=dark",
                     "--meta", "datetime_obs=2025-03-02", env=env)  # fmt: skip
    assert result.returncode == 1
    assert "spectrograph" in one_error_line(result)

"""A user's mistakes get advice in the command line's words, and diagnoses that are true.

All candidates retracted, an option the selector does not take, two files of
one name, a prune without a size, a column that does not exist: each is named
as it is, with the option or command that fixes it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

pytest.importorskip("astropy")

from support.koa_cal import cli_env, koa_cal, one_error_line, records_in, write_cal  # noqa: E402

#: Advice written for Python callers, which the command line must not give.
PYTHON_ADVICE = ("max_size=", "connect_remote", "datetime_obs='", "allow_retracted=True",
                 "pass ")  # fmt: skip


def dark(tmp_path, name: str, day: int, folder: str = "in"):
    cards = {"IMAGETYP": "DARK", "DATE_OBS": f"2025-03-0{day}T02:00:00", "SPECTROG": "yJ",
             "INSTERA": "era1"}  # fmt: skip
    return write_cal(tmp_path / folder / name, float(day), **cards)


def register(env, *paths) -> list[dict]:
    result = koa_cal("--json", "register", *map(str, paths), env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def no_python_advice(line: str) -> None:
    for phrase in PYTHON_ADVICE:
        assert phrase not in line, line


EXPLAIN_DARK = ("explain", "--selector", "nearest", "--option", "cal_type=dark",
                "--meta", "datetime_obs=2025-03-02T03:00", "--meta", "spectrograph=yJ",
                "--meta", "instrument_era=era1")  # fmt: skip


def test_all_candidates_retracted_is_said_with_the_reasons(tmp_path):
    env = cli_env(tmp_path)
    rows = register(env, dark(tmp_path, "d1.fits", 1), dark(tmp_path, "d2.fits", 2))
    for row, reason in zip(rows, ("hot pixels", "light leak"), strict=True):
        assert koa_cal("retract", row["id"], "--reason", reason, env=env).returncode == 0
    result = koa_cal(*EXPLAIN_DARK, env=env)
    assert result.returncode == 1
    why = next(line for line in result.stdout.splitlines() if line.startswith("why:"))
    assert "2 candidates matched and all are retracted" in why
    assert "hot pixels" in why and "light leak" in why and "KOA_ALLOW_RETRACTED=1" in why
    assert "holds no calibration records" not in result.stdout + result.stderr
    error = one_error_line(result)
    assert "all are retracted" in error and "KOA_ALLOW_RETRACTED=1" in error
    no_python_advice(error)

    # The Python call says the same, for its callers.
    from koa_middleware import CalibrationStore
    from koa_middleware.errors import CalibrationNotFoundError
    from koa_middleware.selectors import NearestInTimeSelector

    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False,
                          sync_on_init=False) as store:  # fmt: skip
        frame = {"datetime_obs": "2025-03-02T03:00", "spectrograph": "yJ",
                 "instrument_era": "era1"}  # fmt: skip
        with pytest.raises(CalibrationNotFoundError) as caught:
            store.select_and_get_calibration(frame, NearestInTimeSelector("dark"))
    message = str(caught.value)
    assert "2 candidates matched and all are retracted" in message
    assert "hot pixels" in message and "light leak" in message
    assert "KOA_ALLOW_RETRACTED=1" in message and "allow_retracted=True" in message


def test_an_option_the_selector_does_not_take_is_refused(tmp_path):
    env = cli_env(tmp_path)
    register(env, dark(tmp_path, "d1.fits", 1))
    result = koa_cal(*EXPLAIN_DARK, "--option", "max_day=0.1", env=env)
    assert result.returncode == 2
    error = one_error_line(result)
    assert "'max_day'" in error and "did you mean max_days" in error
    for option in ("cal_type", "match", "max_days", "master_only", "origin", "explain_limit"):
        assert option in error
    latest = koa_cal(*EXPLAIN_DARK[:2], "latest", *EXPLAIN_DARK[3:], "--option", "max_days=3",
                     env=env)  # fmt: skip
    assert latest.returncode == 2 and "validity_days" in one_error_line(latest)
    # An option it takes works, and one left unset shows as none.
    fine = koa_cal(*EXPLAIN_DARK, "--option", "max_days=3", env=env)
    assert fine.returncode == 0, fine.stderr
    unset = koa_cal(*EXPLAIN_DARK, env=env)
    options = next(line for line in unset.stdout.splitlines() if line.startswith("options:"))
    assert "max_days=none" in options


def test_a_second_file_of_the_same_name_gets_the_command_that_registers_it(tmp_path):
    env = cli_env(tmp_path)
    first = register(env, dark(tmp_path, "master_dark.fits", 1, folder="night1"))[0]
    second = dark(tmp_path, "master_dark.fits", 2, folder="night2")
    result = koa_cal("register", str(second), env=env)
    assert result.returncode == 1
    error = one_error_line(result)
    assert f"Another calibration, {first['id']} (cal_type dark)" in error
    assert "master_dark.fits" in error and str(second) in error
    no_python_advice(error)
    command = error.split("with the other options you gave: ", 1)[1]
    assert command.startswith("koa-cal register --set filename=")
    argv = shlex.split(command)[1:]
    again = koa_cal(*argv, env=env)
    assert again.returncode == 0, again.stderr
    names = sorted(r["filename"] for r in records_in(env))
    assert len(names) == 2 and "master_dark.fits" in names


def test_prune_without_a_size_is_misuse(tmp_path):
    env = cli_env(tmp_path)
    register(env, dark(tmp_path, "d1.fits", 1))
    result = koa_cal("prune", env=env)
    assert result.returncode == 2
    error = one_error_line(result)
    assert "--max-size" in error and "KOA_CACHE_MAX_SIZE" in error
    no_python_advice(error)
    sized = koa_cal("prune", env={**env, "KOA_CACHE_MAX_SIZE": "1GiB"})
    assert sized.returncode == 0, sized.stderr


def test_errors_name_the_command_options(tmp_path):
    env = cli_env(tmp_path)
    row = register(env, dark(tmp_path, "d1.fits", 1))[0]
    (tmp_path / "cache" / "calibrations" / "hispec" / "d1.fits").unlink()
    fetched = koa_cal("get", row["id"], env=env)  # the file is gone, and no archive is set
    assert fetched.returncode == 1
    error = one_error_line(fetched)
    assert "--url" in error and "KOA_CALIBRATIONS_URL" in error
    no_python_advice(error)
    repaired = koa_cal("verify", "--repair", env=env)
    assert repaired.returncode == 1 and "--url" in repaired.stdout
    assert "connect_remote" not in repaired.stdout

    undated = write_cal(tmp_path / "in" / "undated.fits", IMAGETYP="DARK", SPECTROG="yJ")
    refused = koa_cal("register", str(undated), env=env)
    assert refused.returncode == 1
    error = one_error_line(refused)
    assert "--set datetime_obs=" in error
    no_python_advice(error)
    untyped = write_cal(tmp_path / "in" / "untyped.fits", DATE_OBS="2025-03-01T02:00:00")
    error = one_error_line(koa_cal("register", str(untyped), env=env))
    assert "--cal-type dark" in error
    no_python_advice(error)


def test_columns_that_do_not_exist_are_refused(tmp_path):
    env = cli_env(tmp_path)
    register(env, dark(tmp_path, "d1.fits", 1))
    result = koa_cal("query", "--columns", "filename,nosuchcol", env=env)
    assert result.returncode == 2
    error = one_error_line(result)
    assert "'nosuchcol'" in error
    for column in ("cal_type", "datetime_obs", "filename", "retract_reason", "spectrograph"):
        assert column in error
    csv_too = koa_cal("query", "--format", "csv", "--columns", "nosuchcol", env=env)
    assert csv_too.returncode == 2
    assert koa_cal("query", "--columns", "filename,spectrograph", env=env).returncode == 0


def test_demo_keep_ends_with_three_commands_that_work(tmp_path):
    pytest.importorskip("fastapi")
    env = cli_env(tmp_path, KOA_LOCAL_CALIBRATION_DATABASE_FILENAME="other.db")
    kept = tmp_path / "kept"
    result = koa_cal("demo", "--keep", str(kept), env=env, cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.rstrip().splitlines()
    at = lines.index("Try next, on the cache the demo kept:")  # the pages' command follows
    commands = [line.strip() for line in lines[at + 1 : at + 4]]
    for command in commands:
        argv = shlex.split(command)
        at = argv.index("koa-cal")
        argv[at : at + 1] = [sys.executable, "-m", "koa_middleware.cli"]
        ran = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, (command, ran.stderr)
        assert ran.stdout.strip()
    assert [shlex.split(c)[shlex.split(c).index("koa-cal") + 5] for c in commands] == [
        "status",
        "query",
        "explain",
    ]

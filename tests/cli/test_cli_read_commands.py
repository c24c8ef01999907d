"""Read commands create nothing, also with read-only caches; caches they cannot use say why.

A shared cache is filled with ``koa-cal register``; a second cache folder that
does not exist yet names it in ``KOA_CALIBRATION_CACHE_READONLY``. ``status``,
``query``, ``versions``, ``verify`` and ``explain`` answer from the shared cache
and leave both folders as they were. Pointed straight at a cache another user
filled (``--cache-dir``), or at a folder it cannot write, ``koa-cal`` says in one
line what to do instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("astropy")

from support.cli_as_account import koa_cal_as  # noqa: E402
from support.koa_cal import cli_env, koa_cal, one_error_line, snapshot, write_cal  # noqa: E402
from support.shared_account import reachable_folder, unused_ids  # noqa: E402

READ_COMMANDS = [
    ["status"],
    ["query", "--format", "json"],
    ["versions"],
    ["verify"],
    ["explain", "--selector", "nearest", "--option", "cal_type=dark",
     "--meta", "datetime_obs=2025-03-02T03:00:00", "--meta", "spectrograph=yJ",
     "--meta", "instrument_era=era1"],
]  # fmt: skip


def dark(folder: Path, day: int) -> Path:
    return write_cal(folder / f"dark_{day:02d}.fits", float(day), IMAGETYP="DARK",
                     DATE_OBS=f"2025-03-{day:02d}T02:00:00", SPECTROG="yJ", INSTERA="era1",
                     MASTRCAL=True)  # fmt: skip


def fill(cache: Path, tmp_path: Path) -> list[str]:
    """Register darks of March 1-3 into ``cache``; return their ids."""
    env = cli_env(tmp_path, KOA_CALIBRATION_CACHE=str(cache))
    files = [dark(tmp_path / "in", day) for day in (1, 2, 3)]
    result = koa_cal("--json", "register", *map(str, files), env=env)
    assert result.returncode == 0, result.stderr
    return [row["id"] for row in json.loads(result.stdout)]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_read_commands_with_a_read_only_cache_answer_from_it_and_create_nothing(tmp_path, command):
    shared = tmp_path / "shared"
    ids = fill(shared, tmp_path)
    before = snapshot(shared)
    own = tmp_path / "own"
    env = cli_env(
        tmp_path, KOA_CALIBRATION_CACHE=str(own), KOA_CALIBRATION_CACHE_READONLY=str(shared)
    )
    result = koa_cal("--json", *command, env=env)
    assert result.returncode == 0, result.stderr
    assert not own.exists()
    assert snapshot(shared) == before
    answer = json.loads(result.stdout)
    if command[0] == "query":
        assert sorted(r["id"] for r in answer) == sorted(ids)
    elif command[0] == "status":
        assert answer["records"] == 3 and answer["files_not_downloaded"] == 0
    elif command[0] == "explain":
        assert answer["chosen"]["id"] == ids[1]
    elif command[0] == "verify":
        assert answer["ok"] == 3 and answer["problems"] == []


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_read_commands_without_any_cache_say_so_and_create_nothing(tmp_path, command):
    own = tmp_path / "own"
    env = cli_env(tmp_path, KOA_CALIBRATION_CACHE=str(own))
    result = koa_cal(*command, env=env)
    assert result.returncode == 1
    assert "koa-cal sync" in one_error_line(result)
    assert not own.exists()


@pytest.fixture
def other_account():
    uid, gid = unused_ids(2)
    with reachable_folder() as folder:
        yield uid, gid, folder


def test_status_on_a_cache_another_user_filled_says_to_read_it_as_read_only(
    tmp_path, other_account
):
    uid, gid, folder = other_account
    shared = folder / "shared"
    fill(shared, tmp_path)
    for path in [shared, *shared.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # root's, readable by all
    before = snapshot(shared)
    env = cli_env(folder, KOA_CALIBRATION_CACHE=str(shared), HOME=str(folder))
    result = koa_cal_as(uid, gid, ["status"], env)
    assert result.returncode == 1, result.stdout
    line = one_error_line(result)
    assert "not writable" in line and "KOA_CALIBRATION_CACHE_READONLY" in line
    assert snapshot(shared) == before

    # Named as a read-only cache, with a folder of the user's own, it works.
    mine = folder / "mine"
    mine.mkdir()
    mine.chmod(0o777)
    env.update(KOA_CALIBRATION_CACHE=str(mine), KOA_CALIBRATION_CACHE_READONLY=str(shared))
    result = koa_cal_as(uid, gid, ["--json", "status"], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["records"] == 3


def test_a_cache_folder_the_user_cannot_create_is_named_with_what_to_do(tmp_path, other_account):
    uid, gid, folder = other_account
    env = cli_env(folder, KOA_CALIBRATION_CACHE=str(folder / "cache"), HOME=str(folder))
    # The entry points that name the hispec profile may be unreadable by the other account.
    args = ["--new-instrument", "register", str(dark(folder / "in", 1))]
    result = koa_cal_as(uid, gid, args, env)
    assert result.returncode == 1, result.stdout
    line = one_error_line(result)
    assert "not writable" in line and "--cache-dir" in line
    assert "Errno" not in line
    assert not (folder / "cache").exists()

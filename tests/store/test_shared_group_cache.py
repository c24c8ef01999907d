"""A cache shared by several accounts of one Unix group works for each of them.

Tests run as root; the accounts are ids no account of the system uses, taken on
by child processes (``support.shared_account``). Root's own permissions are
never what makes a test pass: every store runs as one of those accounts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import time
from pathlib import Path

import httpx
import pytest

from koa_middleware.database.bulk_load import BULK_ROWS
from support.archive import ArchiveServer, create_token, publish
from support.shared_account import account_folder, reachable_folder, run_as, unused_ids

pytestmark = pytest.mark.needs_root("to run stores as other accounts of one group")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared-archive")
    with ArchiveServer(root, instruments=("hispec",)) as server:
        yield server, create_token(root, "write")


def everything_in(cache: Path) -> list[Path]:
    return [cache, *sorted(cache.rglob("*"))]


@contextlib.contextmanager
def group_cache(archive, gid: int, mode: int):
    """``(shared, cache, client)``: a cache folder of group ``gid`` with ``mode``, in a
    folder every account reaches, and a client of the archive with a write token."""
    server, token = archive
    headers = {"Authorization": f"Bearer {token}"}
    with (
        reachable_folder() as shared,
        httpx.Client(base_url=server.base_url + "/", headers=headers) as client,
    ):
        cache = shared / "cache"
        cache.mkdir()
        os.chown(cache, 0, gid)
        cache.chmod(mode)
        yield shared, cache, client


def account_env(archive, shared: Path, uid: int, gid: int) -> dict[str, str]:
    """The environment of account ``uid``: a home of its own, and the archive."""
    server, token = archive
    home = shared / f"home-{uid}"
    if not home.exists():
        account_folder(shared, uid, gid)
    return {
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "state"),
        "KOA_CALIBRATIONS_URL": server.base_url,
        "KOA_API_TOKEN": token,
    }


def member_runner(archive, shared: Path, cache: Path, gid: int):
    """``run(uid, steps)``: ``steps`` on ``cache`` as account ``uid`` of group ``gid``."""

    def run(uid: int, steps: list) -> dict:
        env = account_env(archive, shared, uid, gid)
        return run_as(uid, gid, [gid], 0o002, cache, steps, env=env)

    return run


@pytest.mark.parametrize("setgid_root", [True, False], ids=["setgid_root", "plain_root"])
@pytest.mark.parametrize("primary", ["shared", "own"], ids=["group_primary", "own_primary"])
def test_a_second_account_of_the_group_registers_and_syncs(archive, setgid_root, primary):
    uid1, uid2, gid, own1, own2 = unused_ids(5)
    with group_cache(archive, gid, 0o2775 if setgid_root else 0o775) as (shared, cache, client):
        # The group's accounts, with the group as their primary one or as a second one.
        first = (uid1, gid, [gid]) if primary == "shared" else (uid1, own1, [own1, gid])
        second = (uid2, gid, [gid]) if primary == "shared" else (uid2, own2, [own2, gid])

        def run(account, steps):
            env = account_env(archive, shared, account[0], account[1])
            return run_as(*account, 0o002, cache, steps, env=env)

        made = run(first, [["register", ["first", 2]]])["register"]
        assert len(made) == 2
        published = [publish(client, os.urandom(5000)) for _ in range(3)]

        # The second account writes into the database, the calibrations, the
        # temporary files and the locks that the first one created.
        done = run(second, [["register", ["second", 2]], ["sync", None]])
        names = {Path(p).name for p in done["sync"]}
        expected = {Path(p).name for p in made + done["register"]} | {
            p["filename"] for p in published
        }
        assert expected <= names
        # ... and the first one can still read and write all of it afterwards.
        again = run(first, [["register", ["third", 1]], ["sync", None], ["read_all", None]])
        assert again["read_all"] == len(again["sync"]) >= len(names) + 1
        assert expected | {Path(again["register"][0]).name} <= {Path(p).name for p in again["sync"]}

        for path in everything_in(cache):
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            assert info.st_gid == gid, f"{path} has group {info.st_gid}, not the cache's"
            if stat.S_ISDIR(info.st_mode):
                assert mode & 0o070 == 0o070, f"{path} is {oct(mode)}: not the group's"
                if setgid_root:
                    assert info.st_mode & stat.S_ISGID, f"{path} lost the setgid bit"
            else:
                assert stat.S_ISREG(info.st_mode), path
                assert mode & 0o060 == 0o060, f"{path} is {oct(mode)}, not as umask 002 says"
        owners = {p.lstat().st_uid for p in everything_in(cache)[1:]}
        assert owners >= {uid1, uid2}
        assert not list((cache / "locks" / "hispec").iterdir()), "lock files were left"


def test_an_account_prunes_what_another_account_of_the_group_fetched(archive):
    """Prune's batched locks and reused lock files, in a cache two accounts share."""
    uid1, uid2, gid = unused_ids(3)
    with group_cache(archive, gid, 0o2775) as (shared, cache, client):
        run = member_runner(archive, shared, cache, gid)
        published = {publish(client, os.urandom(5000))["filename"] for _ in range(3)}
        fetched = run(uid1, [["sync", None]])["sync"]
        assert published <= {Path(p).name for p in fetched}
        assert all(Path(p).is_file() for p in fetched)
        removed = run(uid2, [["prune", 0]])["prune"]
        assert published <= set(removed)  # the other account's files, all on the archive
        assert not any((cache / "calibrations" / "hispec" / name).exists() for name in removed)
        # The first account gets them again, and reads every file of the cache.
        again = run(uid1, [["sync", None], ["read_all", None]])
        assert again["read_all"] == len(again["sync"]) >= len(published)
        for path in everything_in(cache):
            info = path.lstat()
            assert info.st_gid == gid, f"{path} has group {info.st_gid}, not the cache's"
        assert not list((cache / "locks" / "hispec").iterdir()), "lock files were left"


def test_a_count_one_account_kept_serves_the_other_until_the_cache_changes(archive):
    """The status count kept beside the database, in a cache two accounts share."""
    uid1, uid2, gid = unused_ids(3)
    with group_cache(archive, gid, 0o2775) as (shared, cache, client):
        run = member_runner(archive, shared, cache, gid)
        for _ in range(3):
            publish(client, os.urandom(5000))
        fetched = run(uid1, [["sync", None]])["sync"]
        database = cache / "database" / "hispec_calibrations.db"
        past = time.time_ns() - 10 * 10**9  # left alone since
        for path in (cache / "calibrations" / "hispec", database, Path(f"{database}-wal")):
            if path.exists():
                os.utime(path, ns=(past, past))
        first = run(uid1, [["census", None]])["census"]
        held = sum(p.stat().st_size for p in (cache / "calibrations" / "hispec").iterdir())
        assert first == {"missing": [], "own_bytes": held} and held >= 3 * 5000
        kept = Path(f"{database}.census")
        info = kept.lstat()
        assert (info.st_uid, info.st_gid) == (uid1, gid)
        assert stat.S_IMODE(info.st_mode) & 0o060 == 0o060, "not the group's to replace"
        memo = json.loads(kept.read_text())
        memo["recorded_bytes"] += 7  # marked, to see that the other account reads it
        kept.write_text(json.dumps(memo))
        assert run(uid2, [["census", None]])["census"]["own_bytes"] == held + 7
        # The other account prunes: its next count lists the folder again.
        after = run(uid2, [["prune", 0], ["census", None]])["census"]
        assert after == {"missing": sorted(Path(p).name for p in fetched), "own_bytes": 0}


def test_an_account_bulk_adds_into_the_database_another_account_made(archive):
    """A bulk write (indexes made after the rows) by the second account of the group."""
    uid1, uid2, gid = unused_ids(3)
    with group_cache(archive, gid, 0o2775) as (shared, cache, _client):
        run = member_runner(archive, shared, cache, gid)
        assert len(run(uid1, [["register", ["first", 2]]])["register"]) == 2
        database = cache / "database" / "hispec_calibrations.db"
        indexes = "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
        with sqlite3.connect(database) as conn:
            before = conn.execute(indexes).fetchall()
        assert run(uid2, [["bulk_add", [0, BULK_ROWS]]])["bulk_add"] == BULK_ROWS
        # The first account reads every record, and the table has its indexes as before.
        assert run(uid1, [["bulk_add", [BULK_ROWS, 5]]])["bulk_add"] == 5
        with sqlite3.connect(database) as conn:
            assert conn.execute(indexes).fetchall() == before
            assert conn.execute("SELECT count(*) FROM hispec").fetchone() == (BULK_ROWS + 7,)
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for path in everything_in(cache):
            assert path.lstat().st_gid == gid, f"{path} has group {path.lstat().st_gid}"


def test_the_database_follows_the_umask(tmp_path):
    """SQLite alone would make it rw-r--r--; the group may write it under umask 002."""
    from koa_middleware import CalibrationStore

    old = os.umask(0o002)
    try:
        with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
            database = Path(store.local_db.db_path)
            for suffix in ("", "-wal", "-shm"):
                mode = stat.S_IMODE(os.lstat(f"{database}{suffix}").st_mode)
                assert mode == 0o664, f"{database}{suffix} is {oct(mode)}"
    finally:
        os.umask(old)


def test_locks_markers_and_temporary_files_follow_the_umask(tmp_path):
    import uuid

    from koa_middleware.cache.layout import CacheLayout, create_private_file

    old = os.umask(0o002)
    try:
        layout = CacheLayout(tmp_path / "cache", "hispec")
        layout.create()
        for folder in (layout.root, layout.calibrations_dir, layout.tmp_dir, layout.locks_dir):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o775, folder
        cal_id = str(uuid.uuid4())
        with layout.lock(cal_id), layout.pending_write(cal_id):
            for path in (layout.lock_path(cal_id), layout.tmp_dir / f"{cal_id}.pending"):
                assert stat.S_IMODE(path.stat().st_mode) == 0o664, path
        os.close(create_private_file(layout.temp_path("x.fits")))
        (temporary,) = layout.tmp_dir.iterdir()
        assert stat.S_IMODE(temporary.stat().st_mode) == 0o664
    finally:
        os.umask(old)

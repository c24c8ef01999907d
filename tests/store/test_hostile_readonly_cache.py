"""Hostile read-only caches (KOA_CALIBRATION_CACHE_READONLY): never a hang, never a disk filled.

A read-only cache whose database ``-wal`` is a link to ``/dev/zero`` was copied
until the disk (or the file-size limit) was full, at every store start; a FIFO
there hung the store's constructor. Such a cache is skipped with a warning that
names the file, and the store works from its own cache. Each store runs in a
child process with a deadline (support.hostile_files): a hang fails the test.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.errors import UnsafeCachePathError
from koa_middleware.sqlite_wal import connect_readonly
from support.hostile_files import call_in_child, fifo, link_to_dev_zero
from support.models import FileModel, dark
from support.shared_account import account_folder, reachable_folder, unused_ids

OPEN = "support.hostile_files:open_store_logging"
#: The file-size limit of a child: a copy of /dev/zero stops there instead of filling the disk.
FILE_SIZE_LIMIT = 64 << 20


@pytest.fixture(autouse=True)
def _environment(no_koa_environment, monkeypatch):
    monkeypatch.setenv("KOA_PROGRESS", "0")
    monkeypatch.delenv("KOA_CALIBRATION_CACHE_READONLY", raising=False)


def shared_cache(folder: Path) -> tuple[Path, str]:
    """A closed cache with one dark; its database path, and the dark's id."""
    with CalibrationStore("hispec", str(folder), connect_remote=False) as writer:
        _, record = writer.register_calibration(FileModel(dark(1, datetime_obs="2024-04-01")))
        db_path = Path(writer.local_db.db_path)
    for suffix in ("-wal", "-shm"):  # closed: SQLite removed them, or they are empty
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    return db_path, record["id"]


def own_cache(folder: Path) -> str:
    with CalibrationStore("hispec", str(folder), connect_remote=False) as store:
        _, record = store.register_calibration(FileModel(dark(2, datetime_obs="2024-04-02")))
    return record["id"]


def open_in_child(cache: Path, readonly: Path, **options) -> dict:
    env = {**os.environ, "KOA_CALIBRATION_CACHE_READONLY": str(readonly), "KOA_PROGRESS": "0"}
    outcome = call_in_child(OPEN, "hispec", str(cache), env=env, **options)
    assert outcome["error"] is None, outcome
    return outcome["value"]


@pytest.mark.parametrize("hostile", ["fifo", "dev_zero"])
def test_a_hostile_wal_is_skipped_with_a_warning(tmp_path, hostile):
    db_path, shared_id = shared_cache(tmp_path / "shared")
    own_id = own_cache(tmp_path / "own")
    wal = Path(f"{db_path}-wal")
    fifo(wal) if hostile == "fifo" else link_to_dev_zero(wal)
    opened = open_in_child(tmp_path / "own", tmp_path / "shared")
    assert opened["ids"] == [own_id]
    assert shared_id not in opened["ids"]
    warned = "\n".join(opened["warnings"])
    assert str(wal) in warned and ("FIFO" in warned or "symbolic link" in warned), warned


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run a store as another account")
@pytest.mark.parametrize("hostile", ["dev_zero", "fifo"])
def test_a_hostile_wal_is_not_copied_by_an_account_that_cannot_write_the_cache(hostile):
    # The account cannot create the -shm file, so the database would be read from a copy:
    # /dev/zero copied until the file-size limit, a FIFO waited on forever.
    uid, gid = unused_ids(2)
    with reachable_folder() as folder:
        db_path, shared_id = shared_cache(folder / "shared")
        for path in [folder / "shared", *(folder / "shared").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        wal = Path(f"{db_path}-wal")
        fifo(wal) if hostile == "fifo" else link_to_dev_zero(wal)
        home = account_folder(folder, uid, gid)
        opened = open_in_child(
            home / "cache",
            folder / "shared",
            account=(uid, gid),
            file_size_limit=FILE_SIZE_LIMIT,
        )
        assert opened["ids"] == []
        warned = "\n".join(opened["warnings"])
        assert str(wal) in warned and ("symbolic link" in warned or "FIFO" in warned), warned
        assert "File too large" not in warned
        scratch = home / "cache" / "tmp"
        assert not scratch.exists() or not [p for p in scratch.rglob("*") if p.is_file()]


def test_the_cache_is_read_again_once_its_files_are_sound(tmp_path):
    db_path, shared_id = shared_cache(tmp_path / "shared")
    own_id = own_cache(tmp_path / "own")
    pipe = fifo(Path(f"{db_path}-wal"))
    assert open_in_child(tmp_path / "own", tmp_path / "shared")["ids"] == [own_id]
    pipe.unlink()
    assert sorted(open_in_child(tmp_path / "own", tmp_path / "shared")["ids"]) == sorted(
        [own_id, shared_id]
    )


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_connect_readonly_refuses_a_database_file_that_is_not_regular(tmp_path, suffix):
    db_path, _ = shared_cache(tmp_path / "shared")
    target = Path(f"{db_path}{suffix}")
    if suffix == "":
        real = db_path.with_name("real.db")
        db_path.rename(real)
        target.symlink_to(real)
    else:
        fifo(target)
    with pytest.raises(UnsafeCachePathError) as info:
        connect_readonly(db_path)
    assert str(target) in str(info.value)
    assert stat.S_ISREG(os.lstat(target).st_mode) is False  # left as it was

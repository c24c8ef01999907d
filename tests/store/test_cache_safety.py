"""Nothing planted in a local cache, no full disk and no changed file breaks the store.

Links and second names (hard links) are planted where the store keeps its own
files; each points at a sentinel file outside the cache, whose bytes must come
through untouched. A full disk is real to the process that meets it: a child
process whose kernel answers its ``write`` calls with ENOSPC (a seccomp filter
installed in that child only), so the machine's disk is never filled.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.errors import ChecksumMismatchError, UnsafeCachePathError
from koa_middleware.hashing import file_md5
from support.children import run_child
from support.models import FileModel, dark

SENTINEL_BYTES = b"sentinel: these bytes must never change\n"
CAL_ID = "5d1e28ba-2fa1-4d2b-883f-0016d3cca427"


@pytest.fixture
def sentinel(tmp_path) -> Path:
    path = tmp_path / "outside" / "sentinel.txt"
    path.parent.mkdir()
    path.write_bytes(SENTINEL_BYTES)
    return path


# -- item 1: links planted in the cache -------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_planted_pending_marker_is_never_written_through(store, sentinel, kind, caplog):
    marker = store.layout.tmp_dir / f"{CAL_ID}.pending"
    if kind == "symlink":
        marker.symlink_to(sentinel)
    else:
        os.link(sentinel, marker)
    caplog.set_level(logging.WARNING)
    path, record = store.register_calibration(FileModel(dark(1, id=CAL_ID)))
    assert record["id"] == CAL_ID and Path(path).read_bytes() == b"x" * 1024
    assert sentinel.read_bytes() == SENTINEL_BYTES
    assert not os.path.lexists(marker)  # the marker is dropped after the commit
    assert str(marker) in caplog.text


def test_recovery_never_acts_on_a_planted_pending_marker(tmp_path, sentinel, store, caplog):
    # The sentinel names an unregistered file of the cache: following the link
    # would read that name and delete the file.
    victim = store.layout.path_for("dark_00007.fits")
    victim.write_bytes(b"kept")
    sentinel.write_bytes(b"dark_00007.fits")
    marker = store.layout.tmp_dir / f"{CAL_ID}.pending"
    marker.symlink_to(sentinel)
    caplog.set_level(logging.WARNING)
    with CalibrationStore("hispec", store.cache_dir, connect_remote=False):
        pass
    assert sentinel.read_bytes() == b"dark_00007.fits"
    assert victim.read_bytes() == b"kept"
    assert not os.path.lexists(marker)
    assert "link" in caplog.text


@pytest.mark.parametrize("dangling", [False, True], ids=["to_a_file", "dangling"])
def test_a_planted_lock_file_link_is_replaced(store, sentinel, dangling):
    lock = store.layout.locks_dir / f"{CAL_ID}.lock"
    target = sentinel.with_name("created_by_the_lock") if dangling else sentinel
    lock.symlink_to(target)
    with store.layout.lock(CAL_ID):
        assert not lock.is_symlink() and lock.is_file()
    assert sentinel.read_bytes() == SENTINEL_BYTES
    assert not target.exists() if dangling else target.read_bytes() == SENTINEL_BYTES


def test_a_link_in_place_of_the_registration_folder_is_never_followed(store, tmp_path):
    outside = tmp_path / "outside_folder"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(SENTINEL_BYTES)
    store.register_calibration(FileModel(dark(1)))
    (stage,) = store.layout.tmp_dir.glob("*.stage")
    stage.rmdir()
    stage.symlink_to(outside, target_is_directory=True)
    path, _ = store.register_calibration(FileModel(dark(2)))
    assert Path(path).read_bytes() == b"x" * 1024
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_bytes() == SENTINEL_BYTES
    assert stage.is_dir() and not stage.is_symlink()


def test_emptying_a_registration_folder_swapped_for_a_link_deletes_nothing(store, tmp_path):
    from koa_middleware.cache.registration_steps import _empty_folder

    outside = tmp_path / "outside_folder"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(SENTINEL_BYTES)
    stage = store.layout.tmp_dir / "0123.stage"
    stage.symlink_to(outside, target_is_directory=True)
    _empty_folder(stage)
    assert (outside / "keep.txt").read_bytes() == SENTINEL_BYTES
    assert not os.path.lexists(stage)


def test_a_link_planted_at_the_destination_is_replaced_not_followed(store, sentinel):
    destination = store.layout.path_for("dark_00001.fits")
    destination.symlink_to(sentinel)
    path, record = store.register_calibration(FileModel(dark(1)))
    assert Path(path) == destination and not destination.is_symlink()
    assert destination.read_bytes() == b"x" * 1024
    assert sentinel.read_bytes() == SENTINEL_BYTES


@pytest.mark.parametrize("folder", ["calibrations", "tmp", "locks"])
def test_cache_folders_that_are_links_out_of_the_cache_are_refused(tmp_path, folder, sentinel):
    cache = tmp_path / "cache"
    outside = tmp_path / "outside_folder"
    outside.mkdir()
    (cache / folder).mkdir(parents=True)
    (cache / folder / "hispec").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeCachePathError, match="outside the cache"):
        CalibrationStore("hispec", str(cache), connect_remote=False)
    assert list(outside.iterdir()) == []


def test_cache_folder_links_inside_the_cache_are_accepted(tmp_path):
    cache = tmp_path / "cache"
    (cache / "elsewhere").mkdir(parents=True)
    (cache / "tmp").symlink_to(cache / "elsewhere", target_is_directory=True)
    with CalibrationStore("hispec", str(cache), connect_remote=False) as store:
        path, _ = store.register_calibration(FileModel(dark(1)))
        assert Path(path).is_file()


# -- item 3: changed cached files ---------------------------------------------------


def test_a_changed_cached_file_is_not_served_without_an_archive(store):
    path, record = store.register_calibration(FileModel(dark(1)))
    assert store.get_calibration(record["id"])[0] == path
    before = os.stat(path)
    with open(path, "r+b") as handle:  # same size, other bytes, same inode
        handle.write(b"y")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # even the old mtime
    with pytest.raises(ChecksumMismatchError, match="verify --repair") as caught:
        store.get_calibration(record["id"])
    assert path in str(caught.value)


def test_a_touched_but_intact_file_is_checked_once_then_fast_again(store):
    path, record = store.register_calibration(FileModel(dark(1)))
    seen = store.local_db.get_file_stat(record["id"])
    info = os.stat(path)
    assert seen == ("dark_00001.fits", record["file_md5"], 1024, info.st_mtime_ns,
                    info.st_ctime_ns, info.st_ino)  # fmt: skip
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))
    assert store.get_calibration(record["id"])[0] == path  # the MD5 is right
    store.close()  # the new stat is in the database for every process now
    with CalibrationStore("hispec", store.cache_dir, connect_remote=False) as again:
        assert again.local_db.get_file_stat(record["id"])[3] == info.st_mtime_ns + 10**9
        assert again.get_calibration(record["id"])[0] == path


def test_a_link_in_place_of_a_cached_file_is_not_served(store, sentinel):
    path, record = store.register_calibration(FileModel(dark(1)))
    Path(sentinel).write_bytes(Path(path).read_bytes())  # same bytes, outside the cache
    os.remove(path)
    os.symlink(sentinel, path)
    with pytest.raises(ChecksumMismatchError, match="not a regular file"):
        store.get_calibration(record["id"])


# -- item 2: a full disk ------------------------------------------------------------


def test_a_full_disk_during_registration_is_a_clear_error(tmp_path):
    cache = tmp_path / "cache"
    result = run_child("register_on_full_disk", cache)  # its writes fail with ENOSPC
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["raised"] == "CacheFullError" and out["oserror"]
    assert out["errno"] == errno.ENOSPC
    assert out["folder"] == str(cache / "tmp" / "hispec")
    assert str(cache / "tmp" / "hispec") in out["message"] and "free" in out["message"]
    with CalibrationStore("hispec", str(cache), connect_remote=False) as store:
        assert len(store.local_db) == 0
        assert list(store.layout.calibrations_dir.iterdir()) == []
        # Nothing of the failed save is left in the cache.
        assert all(not any(p.iterdir()) for p in store.layout.tmp_dir.glob("*.stage"))
        path, record = store.register_calibration(FileModel(dark(1)))  # with room again
        assert file_md5(path) == record["file_md5"]

"""Downloads into the cache: never through a planted link, never serving changed bytes,
and a clear error with nothing left behind when the disk is full.

Sentinel files outside the cache stand for what a planted link points at; their
bytes must come through untouched. A full disk is real to the child process
that meets it: its kernel answers its file writes with ENOSPC (a seccomp filter
installed in that child only), or its file-size limit (``RLIMIT_FSIZE``) answers
EFBIG; the machine's disk is never filled.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.cache.report import verify_cache
from support.children import run_child
from support.published import publish

SENTINEL_BYTES = b"sentinel: these bytes must never change\n" * 8


@pytest.fixture
def sentinel(tmp_path) -> Path:
    path = tmp_path / "outside" / "sentinel.bin"
    path.parent.mkdir()
    path.write_bytes(SENTINEL_BYTES)
    return path


@pytest.fixture
def open_store(shared_archive, instrument, tmp_path, monkeypatch):
    """``open_store(protocol=2, **options)``: a store on ``tmp_path/cache`` and the archive."""
    stores = []

    def make(protocol: int = 2, **options) -> CalibrationStore:
        monkeypatch.setenv("KOA_CALIBRATIONS_URL", shared_archive.url(protocol))
        monkeypatch.setenv("KOA_API_TOKEN", shared_archive.tokens["read"])
        store = CalibrationStore(instrument, str(tmp_path / "cache"), sync_on_init=False, **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def plant(link: Path, sentinel: Path, kind: str) -> None:
    if kind == "symlink":
        link.symlink_to(sentinel)
    else:
        os.link(sentinel, link)


# -- item 1: links planted in the cache -------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
@pytest.mark.parametrize("entry", ["get_calibration", "download_calibration_file"])
def test_a_planted_partial_download_is_never_written_through(
    open_store, publisher, protocol, tmp_path, sentinel, kind, entry
):
    (record,) = publish(publisher, tmp_path / "files", 1, size=64 << 10)
    store = open_store(protocol)
    plant(store.layout.tmp_dir / f"{record['id']}.download", sentinel, kind)
    if protocol == 1:
        plant(store.layout.tmp_dir / f"{record['id']}.download.zip", sentinel, "symlink")
    if entry == "get_calibration":
        path, _ = store.get_calibration(record["id"])
    else:
        path = store.download_calibration_file(record["id"])
    data = (tmp_path / "files" / record["filename"]).read_bytes()
    assert Path(path).read_bytes() == data and not Path(path).is_symlink()
    assert sentinel.read_bytes() == SENTINEL_BYTES
    assert os.stat(sentinel).st_nlink == 1  # the planted second name is gone


def test_a_link_planted_at_the_destination_is_replaced(open_store, publisher, tmp_path, sentinel):
    (record,) = publish(publisher, tmp_path / "files", 1, size=len(SENTINEL_BYTES))
    store = open_store()
    store.sync_records_from_remote()
    destination = store.layout.path_for(record["filename"])
    destination.symlink_to(sentinel)  # same size as the record says
    path, _ = store.get_calibration(record["id"])
    assert Path(path) == destination and not destination.is_symlink()
    assert destination.read_bytes() == (tmp_path / "files" / record["filename"]).read_bytes()
    assert sentinel.read_bytes() == SENTINEL_BYTES


# -- item 3: changed cached files ---------------------------------------------------


def test_a_changed_cached_file_is_fetched_again(open_store, publisher, tmp_path):
    (record,) = publish(publisher, tmp_path / "files", 1, size=4096)
    data = (tmp_path / "files" / record["filename"]).read_bytes()
    store = open_store()
    path, _ = store.get_calibration(record["id"])
    info = os.stat(path)
    with open(path, "r+b") as handle:  # same size, other bytes
        handle.write(bytes([data[0] ^ 0xFF]))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    path, _ = store.get_calibration(record["id"])
    assert Path(path).read_bytes() == data
    now = os.stat(path)
    assert store.local_db.get_file_stat(record["id"])[2:] == (
        now.st_size,
        now.st_mtime_ns,
        now.st_ctime_ns,
        now.st_ino,
    )


def test_verify_repair_records_the_stat_of_the_fresh_copy(open_store, publisher, tmp_path):
    (record,) = publish(publisher, tmp_path / "files", 1, size=4096)
    store = open_store()
    path, _ = store.get_calibration(record["id"])
    Path(path).write_bytes(b"\0" * 4096)
    report = verify_cache(store.cache, True, store.download_calibration_file)
    assert report["unrepaired"] == 0 and report["problems"][0]["repaired"]
    now = os.stat(path)
    seen = store.local_db.get_file_stat(record["id"])
    assert seen == (record["filename"], record["file_md5"], 4096, now.st_mtime_ns,
                    now.st_ctime_ns, now.st_ino)  # fmt: skip


# -- item 2: a full disk ------------------------------------------------------------


@pytest.mark.parametrize("limit", ["ENOSPC", "EFBIG"])
def test_a_full_disk_during_a_download_is_a_clear_error(
    shared_archive, publisher, instrument, tmp_path, monkeypatch, limit
):
    (record,) = publish(publisher, tmp_path / "files", 1, size=1 << 20)
    cache = tmp_path / "cache"
    with CalibrationStore(instrument, str(cache), connect_remote=False):
        pass  # the cache and its database exist before the disk fills
    env = {
        **os.environ,
        "KOA_CALIBRATIONS_URL": shared_archive.url(2),
        "KOA_API_TOKEN": shared_archive.tokens["read"],
    }
    result = run_child("download_on_full_disk", limit, cache, instrument, record["id"], env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    tmp_dir = cache / "tmp" / instrument
    assert out["raised"] == "CacheFullError" and out["oserror"], out
    assert out["errno"] == getattr(errno, limit)
    assert out["folder"] == str(tmp_dir) and out["needed"] == 1 << 20
    assert str(tmp_dir) in out["message"] and f"{1 << 20:,} bytes" in out["message"]
    assert list(tmp_dir.glob("*.download*")) == []  # the partial file is gone
    # With room again, the same cache works.
    monkeypatch.setenv("KOA_CALIBRATIONS_URL", shared_archive.url(2))
    monkeypatch.setenv("KOA_API_TOKEN", shared_archive.tokens["read"])
    with CalibrationStore(instrument, str(cache), connect_remote=True, sync_on_init=False) as store:
        path, _ = store.get_calibration(record["id"])
        assert Path(path).stat().st_size == 1 << 20

"""Keeping a cache in bounds against a real archive: least recently used files go, records stay."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from koa_middleware.cache import check
from koa_middleware.cache.prune import parse_size
from koa_middleware.cache.removal import BATCH
from koa_middleware.cache.report import cache_status, folder_size, verify_cache
from koa_middleware.errors import ConfigurationError, UnsafeCachePathError
from koa_middleware.hashing import file_md5
from support.models import FileModel, dark

SIZE = 10_000
TESTS_DIR = Path(__file__).resolve().parents[1]


def publish(open_store, archive, count: int) -> list[dict]:
    publisher = open_store(
        archive.url(2), archive.tokens["write"], name="publisher", sync_on_init=False
    )
    records = [
        publisher.register_calibration(FileModel(dark(i), os.urandom(SIZE)), origin="KECK")[1]
        for i in range(count)
    ]
    publisher.sync_records_to_remote()
    return records


def files_in(store) -> set[str]:
    return {p.name for p in store.layout.calibrations_dir.iterdir()}


@contextlib.contextmanager
def lock_held_by_another_thread(store, cal_id: str):
    """While the block runs, another thread holds ``cal_id``'s lock (its file is in use)."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.layout.lock(cal_id):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        yield
    finally:
        release.set()
        holder.join()


def test_the_least_recently_used_files_go_and_their_records_stay(archive, open_store):
    records = publish(open_store, archive, 4)
    store = open_store(archive.url(2), archive.tokens["read"], name="reader")
    for record in [records[2], records[0], records[3], records[1]]:  # 2 is the oldest use
        store.get_calibration(record["id"])
    report = store.prune(3 * SIZE)
    assert [r["id"] for r in report.removed] == [records[2]["id"]]
    assert (report.size_before, report.size_after) == (4 * SIZE, 3 * SIZE)
    assert files_in(store) == {r["filename"] for r in records} - {records[2]["filename"]}
    assert len(store.local_db) == 4
    checked = verify_cache(store.cache)  # pruned on purpose: not downloaded, not lost
    assert checked["problems"] == []
    assert [r["id"] for r in checked["not_downloaded"]] == [records[2]["id"]]
    path, _ = store.get_calibration(records[2]["id"])  # fetched again, intact
    assert file_md5(path) == records[2]["file_md5"]


def test_status_after_a_prune_counts_what_is_left_and_lists_what_went(archive, open_store):
    records = publish(open_store, archive, 4)
    store = open_store(archive.url(2), archive.tokens["read"], name="status")
    for record in records:
        store.get_calibration(record["id"])
    report = store.prune(2 * SIZE)
    status = cache_status(store.cache)
    assert status["cache_bytes"]["calibrations"] == folder_size(store.layout.calibrations_dir)
    assert status["cache_bytes"]["calibrations"] == report.size_after == 2 * SIZE
    assert {m["id"] for m in status["missing_files"]} == {r["id"] for r in report.removed}
    assert status["records"] == len(records)


def test_uses_are_remembered_across_stores(archive, open_store):
    records = publish(open_store, archive, 3)
    first = open_store(archive.url(2), archive.tokens["read"], name="shared")
    for record in records:
        first.get_calibration(record["id"])
    first.get_calibration(records[0]["id"])  # now the most recent
    first.close()
    again = open_store(archive.url(2), archive.tokens["read"], name="shared", sync_on_init=False)
    removed = [r["id"] for r in again.prune(SIZE).removed]
    assert removed == [records[1]["id"], records[2]["id"]]


def test_koa_cache_max_size_prunes_after_downloads(archive, open_store, monkeypatch):
    records = publish(open_store, archive, 5)
    monkeypatch.setenv("KOA_CACHE_MAX_SIZE", str(2 * SIZE))
    store = open_store(archive.url(2), archive.tokens["read"], name="bounded")
    for record in records:
        store.get_calibration(record["id"])
    size = sum(p.stat().st_size for p in store.layout.calibrations_dir.iterdir())
    assert size <= 2 * SIZE
    assert records[-1]["filename"] in files_in(store)  # the newest stays
    assert len(store.local_db) == 5


def test_files_of_this_origin_the_archive_lacks_are_never_removed(archive, open_store):
    records = publish(open_store, archive, 2)
    store = open_store(archive.url(2), archive.tokens["read"], name="mixed")
    for record in records:
        store.get_calibration(record["id"])
    _, mine = store.register_calibration(FileModel(dark(7), os.urandom(SIZE)))  # origin LOCAL
    report = store.prune(0)
    assert report.kept_local == [mine["id"]]
    assert files_in(store) == {mine["filename"]}


def test_without_an_archive_every_file_of_this_origin_is_kept(open_store, tmp_path):
    store = open_store("http://127.0.0.1:9/", None, name="alone", connect_remote=False)
    _, mine = store.register_calibration(FileModel(dark(1), os.urandom(SIZE)))
    report = store.prune("0")
    assert report.removed == [] and report.kept_local == [mine["id"]]


def test_a_file_in_use_is_not_removed(archive, open_store):
    records = publish(open_store, archive, 2)
    store = open_store(archive.url(2), archive.tokens["read"], name="busy")
    for record in records:
        store.get_calibration(record["id"])
    with lock_held_by_another_thread(store, records[0]["id"]):
        report = store.prune(0)
    assert report.kept_in_use == [records[0]["id"]]
    assert files_in(store) == {records[0]["filename"]}


@pytest.mark.parametrize(("text", "size"), [("50GiB", 50 * 2**30), ("1.5 MB", 1_500_000), ("7", 7)])
def test_sizes_are_read_with_their_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-5", "5 parsecs", ""])
def test_a_bad_size_says_how_to_write_one(text):
    with pytest.raises(ConfigurationError, match="50GiB"):
        parse_size(text)


def test_prune_under_concurrent_gets_from_another_process(archive, open_store, instrument):
    records = publish(open_store, archive, 6)
    store = open_store(archive.url(2), archive.tokens["read"], name="contended")
    for record in records:
        store.get_calibration(record["id"])
    env = {
        **os.environ,
        "PYTHONPATH": str(TESTS_DIR),
        "KOA_CALIBRATIONS_URL": archive.url(2),
        "KOA_API_TOKEN": archive.tokens["read"],
    }
    ids = ",".join(r["id"] for r in records)
    getter = subprocess.Popen(
        [sys.executable, "-m", "support.child_getter", instrument, store.cache_dir, ids, "40"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while getter.poll() is None:
            store.prune(2 * SIZE)
    finally:
        out, err = getter.communicate(timeout=120)
    assert getter.returncode == 0, err
    assert out.strip() == str(40 * len(records))  # every get returned the right bytes
    assert len(store.local_db) == len(records)
    for record in records:  # whatever is left is whole; whatever went comes back whole
        path, _ = store.get_calibration(record["id"])
        assert file_md5(path) == record["file_md5"]


def test_a_file_pruned_between_its_stat_and_its_check_is_fetched_again(
    archive, open_store, monkeypatch
):
    records = publish(open_store, archive, 2)
    store = open_store(archive.url(2), archive.tokens["read"], name="raced")
    pruner = open_store(archive.url(2), archive.tokens["read"], name="raced", sync_on_init=False)
    for record in records:
        store.get_calibration(record["id"])
    path = store.layout.path_for(records[0]["filename"])
    os.utime(path, ns=(10**9, 10**9))  # a stat not seen before: the next get reads the file
    real_md5 = check.file_md5

    def prune_first(target):  # the other process's prune lands right after the stat
        if Path(target) == path:
            pruner.prune(0)
        return real_md5(target)

    monkeypatch.setattr(check, "file_md5", prune_first)
    got, _ = store.get_calibration(records[0]["id"])
    monkeypatch.setattr(check, "file_md5", real_md5)
    assert file_md5(got) == records[0]["file_md5"]  # fetched again, whole
    assert files_in(store) == {records[0]["filename"]}


def test_a_file_in_use_makes_way_for_the_next_in_line(archive, open_store):
    records = publish(open_store, archive, 4)
    store = open_store(archive.url(2), archive.tokens["read"], name="next-in-line")
    for record in records:  # 0 is the least recently used, then 1, 2, 3
        store.get_calibration(record["id"])
    with lock_held_by_another_thread(store, records[0]["id"]):
        report = store.prune(2 * SIZE)
    assert report.kept_in_use == [records[0]["id"]]
    assert [r["id"] for r in report.removed] == [records[1]["id"], records[2]["id"]]
    assert files_in(store) == {records[0]["filename"], records[3]["filename"]}
    assert report.size_after == 2 * SIZE
    assert os.listdir(store.layout.locks_dir) == []  # prune's locks are gone with it


def test_prune_enters_no_files_folder_that_leads_out_of_the_cache(open_store, tmp_path):
    store = open_store("http://127.0.0.1:9/", None, name="swapped", connect_remote=False)
    for i in range(2):
        store.register_calibration(FileModel(dark(i), os.urandom(SIZE)), origin="KECK")
    outside = tmp_path / "elsewhere"
    store.layout.calibrations_dir.rename(outside)  # the files, moved out of the cache
    store.layout.calibrations_dir.symlink_to(outside)
    with pytest.raises(UnsafeCachePathError, match="outside the cache"):
        store.prune(0)
    assert len(list(outside.iterdir())) == 2  # nothing outside the cache was removed


def test_many_files_are_pruned_in_batches_and_verify_finds_them_not_downloaded(open_store):
    store = open_store("http://127.0.0.1:9/", None, name="batches", connect_remote=False)
    count = BATCH + 30  # more than one batch of locks
    for i in range(count):  # one family per file: none is a version of another
        record = dark(i, datetime_obs=f"2024-{1 + i // 28:02d}-{1 + i % 28:02d}T00:00:00.000")
        store.register_calibration(FileModel(record, os.urandom(100)), origin="KECK")
    report = store.prune(10 * 100)
    assert len(report.removed) == count - 10
    assert len(files_in(store)) == 10
    checked = verify_cache(store.cache)
    assert checked["problems"] == []
    assert len(checked["not_downloaded"]) == count - 10
    assert os.listdir(store.layout.locks_dir) == []

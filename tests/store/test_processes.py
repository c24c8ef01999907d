"""Several pipeline processes on one cache, and processes killed mid-registration."""

from __future__ import annotations

import multiprocessing
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore, LocalCalibrationDB
from koa_middleware.cache.layout import CacheLayout
from koa_middleware.hashing import file_digest
from support.children import (
    ready_file,
    release_and_finish,
    run_child,
    start_child,
    stop_children,
    wait_until_ready,
)

pytestmark = pytest.mark.slow


def start_worker(
    cache: Path, prefix: str, count: int, ready: Path | None = None
) -> subprocess.Popen:
    """A ``support.register_worker`` process; it creates ``ready`` once its store is open."""
    args = [cache, prefix, count] if ready is None else [cache, prefix, count, ready]
    return start_child("support.register_worker", *args, stderr=subprocess.PIPE)


def wait_for_records(cache: Path, more_than: int, timeout: float = 60.0) -> None:
    """Wait until the cache's database holds more than ``more_than`` records."""
    db = LocalCalibrationDB(cache / "database" / "hispec_calibrations.db", "hispec")
    try:
        deadline = time.monotonic() + timeout
        while len(db) <= more_than:
            assert time.monotonic() < deadline, "the worker registered nothing"
            time.sleep(0.01)
    finally:
        db.close()


def assert_cache_consistent(store: CalibrationStore) -> int:
    """Every record's file is complete and correct; every file has a record."""
    rows = list(store.local_db.rows)
    for row in rows:
        path = store.layout.path_for(row["filename"])
        assert path.is_file(), f"record {row['id']} has no file"
        assert file_digest(path) == (row["file_md5"], row["file_size"]), path
    on_disk = {p.name for p in store.layout.calibrations_dir.iterdir()}
    assert on_disk == {row["filename"] for row in rows}, "files without records"
    return len(rows)


def test_four_processes_register_one_family(tmp_path):
    cache = tmp_path / "cache"
    CalibrationStore("hispec", str(cache), connect_remote=False).close()
    ready = tmp_path / "ready"
    ready.mkdir()
    workers = [start_worker(cache, f"w{n}", 200, ready_file(ready, n)) for n in range(4)]
    release_and_finish(workers, ready, cache / "go")  # once every worker has opened its store
    with CalibrationStore("hispec", str(cache), connect_remote=False) as store:
        assert assert_cache_consistent(store) == 800
        versions = sorted(store.local_db.get_column("cal_version"))
        assert versions == [f"{v:03d}" for v in range(1, 801)]
        assert store.detect_version_issues() == []


def test_process_killed_while_registering_leaves_a_consistent_cache(tmp_path):
    cache = tmp_path / "cache"
    CalibrationStore("hispec", str(cache), connect_remote=False).close()
    (cache / "go").touch()
    rng = random.Random(20261126)
    total = 0
    for round_ in range(12):
        worker = start_worker(cache, f"r{round_}", 0)
        try:
            wait_for_records(cache, more_than=total)  # the worker is under way ...
            time.sleep(rng.random() * 0.3)  # ... then a random moment of its work
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        with CalibrationStore("hispec", str(cache), connect_remote=False) as store:
            count = assert_cache_consistent(store)
            assert count > total
            total = count
            allowed = ("calibrations", "database", "tmp", "locks")
            leftovers = [
                p
                for p in store.layout.root.rglob("*")
                if p.is_file()
                and p.name != "go"
                and p.relative_to(store.layout.root).parts[0] not in allowed
            ]
            assert leftovers == [], leftovers


def test_kill_between_rename_and_commit_is_recovered(tmp_path):
    cache = tmp_path / "cache"
    result = run_child("die_between_rename_and_commit", cache)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert (cache / "calibrations" / "hispec" / "doomed.fits").is_file()  # the stray file
    with CalibrationStore("hispec", str(cache), connect_remote=False) as store:
        assert store.local_db.query_filename("doomed.fits") is None
        assert not (cache / "calibrations" / "hispec" / "doomed.fits").exists()
        assert list(store.layout.tmp_dir.glob("*.pending")) == []
        assert_cache_consistent(store)


def test_a_store_opening_mid_registration_leaves_the_writer_its_file(tmp_path, monkeypatch):
    """Crash recovery skips the marker of a writer that is alive (it holds the marker's lock).

    A second store opens while a child process has renamed its file into place
    and not yet committed its record. The child is started from inside the
    store's opening, just before its crash recovery: by then the opening store
    has its database open, so the child can take the write lock and get to the
    rename.
    """
    cache, go = tmp_path / "cache", tmp_path / "go"
    CalibrationStore("hispec", str(cache), connect_remote=False).close()
    real_recover_pending = CacheLayout.recover_pending
    writer: list[subprocess.Popen] = []

    def recover_while_a_writer_waits_to_commit(layout, record_owns):
        writer.append(
            start_child("pause_between_rename_and_commit", cache, ready_file(tmp_path, 0), go,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )  # fmt: skip
        wait_until_ready(tmp_path, writer)
        assert (cache / "calibrations" / "hispec" / "late.fits").is_file()
        return real_recover_pending(layout, record_owns)

    monkeypatch.setattr(CacheLayout, "recover_pending", recover_while_a_writer_waits_to_commit)
    try:
        with CalibrationStore("hispec", str(cache), connect_remote=False) as store:
            monkeypatch.undo()
            go.touch()
            out, err = writer[0].communicate(timeout=120)
            assert writer[0].returncode == 0, err
            record = store.local_db.query_id(out.strip())
            assert record is not None and record["filename"] == "late.fits"
            path, _ = store.get_calibration(record["id"])
            assert file_digest(path) == (record["file_md5"], record["file_size"])
            assert_cache_consistent(store)
    finally:
        stop_children(writer)


def open_new_database(path: str, barrier, results) -> None:
    """Open the database once every process is ready, and report what went wrong."""
    barrier.wait()
    try:
        db = LocalCalibrationDB(path, "hispec")
        results.put(len(db))
        db.close()
    except Exception as exc:  # reported to the test, which names it
        results.put(repr(exc))


def test_eight_processes_open_one_new_database_at_once(tmp_path):
    """Workers of a cluster job start together on a cache that does not exist yet."""
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(10):  # the race is narrow: give it many chances
        path = str(tmp_path / f"calibrations{round_}.db")
        barrier, results = ctx.Barrier(8), ctx.Queue()
        procs = [
            ctx.Process(target=open_new_database, args=(path, barrier, results)) for _ in range(8)
        ]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == [0] * 8, f"round {round_}: {outcomes}"

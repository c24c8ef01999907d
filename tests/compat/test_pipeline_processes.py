"""The registration guarantees hold with a pipeline's overridden steps in place."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from compat.hispec_pipeline.datamodel import HispecCalibration
from compat.hispec_pipeline.store import HispecCalibrationStore

from koa_middleware.hashing import file_digest
from support.children import ready_file, release_and_finish, start_child

pytestmark = pytest.mark.slow


def start_worker(
    cache: Path, prefix: str, count: int, ready: Path | None = None, **env: str
) -> subprocess.Popen:
    """A ``compat.hispec_pipeline.worker`` process; it creates ``ready`` once its store is open."""
    args = [cache, prefix, count] if ready is None else [cache, prefix, count, ready]
    environment = {**os.environ, **env}
    return start_child(
        "compat.hispec_pipeline.worker", *args, env=environment, stderr=subprocess.PIPE
    )


def consistent_records(store) -> list[dict]:
    """Every record's file is complete and correct, and every file has a record."""
    rows = list(store.local_db.rows)
    for row in rows:
        path = store.layout.path_for(row["filename"])
        assert file_digest(path) == (row["file_md5"], row["file_size"]), path
    assert {p.name for p in store.layout.calibrations_dir.iterdir()} == {
        row["filename"] for row in rows
    }
    return rows


def test_four_pipeline_processes_register_one_family(tmp_path, no_koa_environment):
    cache = tmp_path / "cache"
    HispecCalibrationStore("hispec", str(cache), connect_remote=False).close()
    ready = tmp_path / "ready"
    ready.mkdir()
    workers = [start_worker(cache, f"w{n}", 50, ready_file(ready, n)) for n in range(4)]
    release_and_finish(workers, ready, cache / "go")  # once every worker has opened its store
    with HispecCalibrationStore("hispec", str(cache), connect_remote=False) as store:
        rows = consistent_records(store)
        assert sorted(r["cal_version"] for r in rows) == [f"{v:03d}" for v in range(1, 201)]
        assert store.detect_version_issues() == []


def test_kill_between_save_and_commit_leaves_no_record_and_no_file(tmp_path, no_koa_environment):
    cache = tmp_path / "cache"
    HispecCalibrationStore("hispec", str(cache), connect_remote=False).close()
    (cache / "go").touch()
    worker = start_worker(cache, "doomed", 0, KILL_AT="finalize")
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == -signal.SIGKILL, err.decode()
    saved = list((cache / "tmp" / "hispec").rglob("*.fits"))
    assert saved, "the model had saved its file before the kill"
    with HispecCalibrationStore("hispec", str(cache), connect_remote=False) as store:
        assert consistent_records(store) == []
        meta = {"cal_type": "dark", "spectrograph": "yj", "datetime_obs": "2026-03-01"}
        _, record = store.register_calibration(HispecCalibration(meta))
        assert record["cal_version"] == "001"  # the killed registration took no version

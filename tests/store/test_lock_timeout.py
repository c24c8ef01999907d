"""A calibration lock held by another process: the waiter says which, and gives up when told.

The holder is a real child process (``support.children.hold_lock``); the store
waits for it as a pipeline or ``koa-cal`` would, removing that calibration.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.cache.locks import NOTICE_AFTER
from koa_middleware.errors import KOAError, LockTimeoutError
from support.children import start_child
from support.koa_cal import cli_env, koa_cal
from support.models import FileModel, dark


@contextmanager
def held(cache: Path, cal_id: str) -> Iterator[subprocess.Popen]:
    """A child process holding the lock of calibration ``cal_id`` in ``cache``."""
    child = start_child(
        "hold_lock", cache, cal_id, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        yield child
    finally:
        child.kill()
        child.wait(timeout=60)


def registered(cache: Path) -> str:
    """The id of a calibration registered in ``cache``."""
    with CalibrationStore("hispec", str(cache), connect_remote=False) as store:
        _, record = store.register_calibration(FileModel(dark(1)))
    return record["id"]


def lock_notices(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("Waiting for the lock")]


def test_a_lock_held_past_koa_lock_timeout_is_a_clear_error(
    tmp_path, monkeypatch, caplog, no_koa_environment
):
    cache = tmp_path / "cache"
    cal_id = registered(cache)
    monkeypatch.setenv("KOA_LOCK_TIMEOUT", "2")
    with (
        held(cache, cal_id) as child,
        CalibrationStore("hispec", str(cache), connect_remote=False) as store,
    ):
        assert store.config.source("lock_timeout") == "environment (KOA_LOCK_TIMEOUT)"
        lock = store.layout.lock_path(cal_id)
        with caplog.at_level(logging.WARNING), pytest.raises(LockTimeoutError) as raised:
            store.remove(cal_id)
        assert store.local_db.query_id(cal_id) is not None, "removed without its lock"
    error = raised.value
    assert isinstance(error, KOAError)
    assert (error.path, error.holder) == (str(lock), child.pid)
    message = str(error)
    assert str(lock) in message and f"process {child.pid}" in message
    assert "KOA_LOCK_TIMEOUT" in message and f"kill {child.pid}" in message
    # Before giving up, it said once which lock it waited for, and who held it.
    (notice,) = lock_notices(caplog)
    assert str(lock) in notice.getMessage() and f"process {child.pid}" in notice.getMessage()


def test_without_a_timeout_the_waiter_says_once_who_holds_the_lock_and_waits(
    tmp_path, caplog, no_koa_environment
):
    cache = tmp_path / "cache"
    cal_id = registered(cache)
    with (
        held(cache, cal_id) as child,
        CalibrationStore("hispec", str(cache), connect_remote=False) as store,
    ):
        assert store.config.lock_timeout is None
        lock = store.layout.lock_path(cal_id)
        removed = threading.Event()

        def remove() -> None:
            store.remove(cal_id)
            removed.set()

        with caplog.at_level(logging.WARNING):
            thread = threading.Thread(target=remove, daemon=True)
            thread.start()
            # the notice comes after NOTICE_AFTER seconds, while the lock is still held
            assert not removed.wait(NOTICE_AFTER + 3)
            (notice,) = lock_notices(caplog)
            assert str(lock) in notice.getMessage()
            assert f"process {child.pid}" in notice.getMessage()
            child.kill()  # the system lets go of its lock
            thread.join(timeout=60)
        assert removed.is_set()
        assert store.local_db.query_id(cal_id) is None
        assert len(lock_notices(caplog)) == 1


def test_koa_cal_gives_up_after_koa_lock_timeout_naming_the_lock_and_its_holder(tmp_path):
    env = cli_env(tmp_path, KOA_LOCK_TIMEOUT="1")
    cache = Path(env["KOA_CALIBRATION_CACHE"])
    cal_id = registered(cache)
    with held(cache, cal_id) as child:
        result = koa_cal("remove", cal_id, env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    *notices, line = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and len(notices) == 1  # the notice of the wait, once
    assert f"locks/hispec/{cal_id}.lock" in line and f"process {child.pid}" in line
    assert "KOA_LOCK_TIMEOUT" in line
    assert cal_id in koa_cal("query", "--columns", "id", env=env).stdout


def test_koa_cal_config_shows_the_lock_timeout_and_refuses_a_bad_one(tmp_path):
    env = cli_env(tmp_path, KOA_LOCK_TIMEOUT="90")
    shown = koa_cal("config", env=env)
    assert shown.returncode == 0, shown.stderr
    (line,) = [line for line in shown.stdout.splitlines() if "lock_timeout" in line]
    assert "90" in line and "KOA_LOCK_TIMEOUT" in line
    bad = koa_cal("config", env={**env, "KOA_LOCK_TIMEOUT": "soon"})
    assert bad.returncode != 0
    assert "KOA_LOCK_TIMEOUT='soon' is not a number of seconds" in bad.stderr

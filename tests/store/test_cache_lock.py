"""The per-calibration lock of the cache: one holder across threads and processes."""

from __future__ import annotations

import subprocess
import threading
import uuid

from koa_middleware.cache.layout import CacheLayout
from support.children import start_child


def acquire_in_thread(layout: CacheLayout, cal_id: str) -> threading.Event:
    acquired = threading.Event()

    def take() -> None:
        with layout.lock(cal_id):
            acquired.set()

    threading.Thread(target=take, daemon=True).start()
    return acquired


def test_lock_waits_for_another_process_and_is_freed_when_it_dies(tmp_path):
    layout = CacheLayout(tmp_path, "hispec")
    layout.create()
    cal_id = str(uuid.uuid4())
    holder = start_child(
        "hold_lock",
        tmp_path,
        cal_id,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        acquired = acquire_in_thread(layout, cal_id)
        assert not acquired.wait(1.0), "the lock was taken while another process held it"
        other = acquire_in_thread(layout, str(uuid.uuid4()))
        assert other.wait(10), "a lock on another calibration had to wait"
        holder.kill()  # no clean-up runs: the system drops the lock
        holder.wait(timeout=30)
        assert acquired.wait(10), "the lock of a killed process was never released"
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_lock_excludes_threads_of_one_process(tmp_path):
    layout = CacheLayout(tmp_path, "hispec")
    layout.create()
    cal_id = str(uuid.uuid4())
    with layout.lock(cal_id):
        acquired = acquire_in_thread(layout, cal_id)
        assert not acquired.wait(0.5)
    assert acquired.wait(10)

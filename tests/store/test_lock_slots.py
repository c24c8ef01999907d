"""The reused lock files of a prune: held under a calibration's name, exclusive, given back."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from koa_middleware.cache.layout import CacheLayout
from koa_middleware.cache.lock_slots import LockSlots

WAITER = textwrap.dedent(
    """
    import sys
    from koa_middleware.cache.layout import CacheLayout
    layout = CacheLayout(sys.argv[1], "hispec")
    print("waiting", flush=True)
    with layout.lock(sys.argv[2]):
        print("locked", flush=True)
    """
)


@pytest.fixture
def slots(tmp_path):
    layout = CacheLayout(tmp_path / "cache", "hispec")
    layout.create()
    with (
        layout.opened_folder(layout.tmp_dir) as tmp,
        layout.opened_folder(layout.locks_dir) as locks,
    ):
        made = LockSlots(tmp, locks, layout.tmp_dir, 2)
        if not made.enabled:
            pytest.skip("this system has no renameat2")
        yield layout, made
        made.close()


def test_a_slot_holds_the_calibrations_lock_until_given_back(slots):
    layout, made = slots
    cal_id = str(uuid.uuid4())
    name = f"{cal_id}.lock"
    slot = made.take(name)
    assert slot is not None
    assert layout.in_use(cal_id)  # other processes see the calibration in use
    assert os.listdir(layout.locks_dir) == [name]
    made.give_back(name, slot)
    assert not layout.in_use(cal_id)
    assert os.listdir(layout.locks_dir) == []
    with layout.lock(cal_id):  # anyone may take it now
        pass


def test_an_existing_lock_file_is_never_replaced(slots):
    layout, made = slots
    cal_id = str(uuid.uuid4())
    with layout.lock(cal_id):
        assert made.take(f"{cal_id}.lock") is None
        assert layout.in_use(cal_id)
    assert os.listdir(layout.locks_dir) == []


def test_a_process_waiting_on_a_slot_gets_the_lock_once_given_back(slots):
    layout, made = slots
    cal_id = str(uuid.uuid4())
    name = f"{cal_id}.lock"
    slot = made.take(name)
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, str(layout.root), cal_id],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert waiter.stdout.readline().strip() == "waiting"
        # it cannot take the lock while the slot holds it (it blocks in flock)
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=1.0)
        made.give_back(name, slot)
        assert waiter.stdout.readline().strip() == "locked"
        assert waiter.wait(timeout=30) == 0
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert os.listdir(layout.locks_dir) == []  # no lock file is left by either
    assert made.take(f"{uuid.uuid4()}.lock") is not None  # slots still serve

"""Lock files of the cache, shared by the processes of a machine: exclusive, removed after use."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from koa_middleware.cache.layout import CacheLayout

HOLDER = textwrap.dedent(
    """
    import sys
    from koa_middleware.cache.layout import CacheLayout
    layout = CacheLayout(sys.argv[1], "hispec")
    with layout.lock(sys.argv[2]):
        print("locked", flush=True)
        sys.stdin.read()  # until the test closes the pipe
    print("released", flush=True)
    """
)

COUNTER = textwrap.dedent(
    """
    import sys, uuid
    from pathlib import Path
    from koa_middleware.cache.layout import CacheLayout
    layout = CacheLayout(sys.argv[1], "hispec")
    shared, rounds = sys.argv[2], int(sys.argv[3])
    counter = Path(sys.argv[1]) / "counter"
    for _ in range(rounds):
        with layout.lock(shared):
            value = int(counter.read_text() or 0)
            counter.write_text(str(value + 1))
        with layout.lock(str(uuid.uuid4())):  # a calibration of its own
            pass
    """
)


@pytest.fixture
def layout(tmp_path) -> CacheLayout:
    layout = CacheLayout(tmp_path, "hispec")
    layout.create()
    return layout


def start_holder(layout: CacheLayout, cal_id: str) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(layout.root), cal_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_processes_taking_one_lock_never_overlap_and_leave_no_lock_files(layout):
    (layout.root / "counter").write_text("0")
    shared, workers, rounds = str(uuid.uuid4()), 4, 150
    processes = [
        subprocess.Popen([sys.executable, "-c", COUNTER, str(layout.root), shared, str(rounds)])
        for _ in range(workers)
    ]
    for process in processes:
        assert process.wait(timeout=240) == 0
    # Every increment happened under the lock: none was lost to an overlap,
    # although the lock file was removed and made again all along.
    assert int((layout.root / "counter").read_text()) == workers * rounds
    assert os.listdir(layout.locks_dir) == [], "lock files piled up"


def test_in_use_sees_a_holder_in_another_process(layout):
    cal_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    assert not layout.in_use(cal_id)
    holder = start_holder(layout, cal_id)
    try:
        assert layout.in_use(cal_id)
        assert not layout.in_use(other)
        assert not layout.lock_path(other).exists(), "asking created a lock file"
        holder.stdin.close()
        assert holder.stdout.readline().strip() == "released"
        assert holder.wait(timeout=60) == 0
        assert not layout.in_use(cal_id)
        assert not layout.lock_path(cal_id).exists()
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_a_killed_holder_frees_the_lock_and_the_next_holder_removes_its_file(layout):
    cal_id = str(uuid.uuid4())
    holder = start_holder(layout, cal_id)
    try:
        holder.kill()  # no clean-up runs: the file stays, the system drops the lock
        holder.wait(timeout=60)
        assert layout.lock_path(cal_id).exists()
        assert not layout.in_use(cal_id)
        with layout.lock(cal_id):
            assert layout.in_use(cal_id)
        assert not layout.lock_path(cal_id).exists()
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_a_waiter_gets_the_lock_after_the_holder_removed_the_file(layout):
    """The waiter opened the file the holder removes; it must lock the new one."""
    cal_id = str(uuid.uuid4())
    holder = start_holder(layout, cal_id)
    waiter = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(layout.root), cal_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        holder.stdin.close()
        assert holder.stdout.readline().strip() == "released"
        assert waiter.stdout.readline().strip() == "locked"
        assert layout.in_use(cal_id)
        waiter.stdin.close()
        assert waiter.wait(timeout=60) == 0
        assert not layout.lock_path(cal_id).exists()
    finally:
        for process in (holder, waiter):
            process.kill()
            process.wait(timeout=60)


def test_a_link_at_a_lock_path_is_not_a_lock_in_use_and_is_never_followed(layout, tmp_path):
    cal_id = str(uuid.uuid4())
    target = tmp_path / "outside"
    target.write_bytes(b"keep")
    layout.lock_path(cal_id).symlink_to(target)
    assert not layout.in_use(cal_id)
    with layout.lock(cal_id):
        assert not layout.lock_path(cal_id).is_symlink()
    assert target.read_bytes() == b"keep"
    assert not os.path.lexists(layout.lock_path(cal_id))

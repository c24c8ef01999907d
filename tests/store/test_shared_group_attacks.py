"""Another member of a cache's Unix group cannot make the owner's store touch anything outside it.

Tests run as root; the owner and the member are ids no account of the system
uses, taken on by child processes (``support.group_attack``). Each attack aims
at sentinel files in a folder that only the owner may write, under the test's
own temporary folder; they must come through untouched.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.group_attack import Account, hear, say, start_as
from support.shared_account import reachable_folder, unused_ids

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root, to run stores as other accounts of one group"
)

SENTINEL = b"sentinel: the owner's, never to be removed\n"
#: An age the cleaning of the temporary folder removes (it keeps what is younger than 60 s).
OLD = time.time() - 7200


def accounts() -> tuple[Account, Account, int]:
    """Two accounts of one group: one with it as primary group, one with a group of its own."""
    uid_a, uid_b, group, own_a = unused_ids(4)
    return Account(uid_a, own_a, [own_a, group]), Account(uid_b, group, [group]), group


@pytest.fixture(params=["a_owns", "b_owns"])
def roles(request) -> tuple[Account, Account, int]:
    """(owner, member, group): each account takes each role."""
    a, b, group = accounts()
    return (a, b, group) if request.param == "a_owns" else (b, a, group)


@pytest.fixture
def shared() -> Iterator[Path]:
    with reachable_folder() as folder:
        yield folder


def group_cache(shared: Path, group: int) -> Path:
    """A cache root of the group, as docs/cache.rst recommends (setgid, group-writable)."""
    cache = shared / "cache"
    cache.mkdir()
    os.chown(cache, 0, group)
    cache.chmod(0o2775)
    return cache


def owner_only_folder(shared: Path, owner: Account) -> Path:
    """A folder only ``owner`` may change, holding old sentinel files and an old folder."""
    folder = shared / "owner-only"
    (folder / "old-folder").mkdir(parents=True)
    for path in (folder / "old.txt", folder / "old.part", folder / "old-folder" / "inner.txt"):
        path.write_bytes(SENTINEL)
    for path in (*folder.rglob("*"), folder):
        os.chown(path, owner.uid, owner.gid)
        os.utime(path, (OLD, OLD), follow_symlinks=False)
    folder.chmod(0o755)
    return folder


def assert_untouched(folder: Path) -> None:
    for name in ("old.txt", "old.part", "old-folder/inner.txt"):
        assert (folder / name).read_bytes() == SENTINEL, f"{name} outside the cache was changed"


def run_to_end(child) -> str:
    line = hear(child)
    assert child.wait(timeout=120) == 0, child.stderr.read()
    return line


def start_cache(first: Account, cache: Path) -> None:
    assert run_to_end(start_as(first, "store", cache)) == "started"


def has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open (it opened the database: checks are over)."""
    folder = Path(f"/proc/{pid}/fd")
    try:
        links = [os.readlink(folder / fd) for fd in os.listdir(folder)]
    except FileNotFoundError:
        return False
    return str(path) in links


def wait_until(condition, what: str, deadline: float = 120.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"gave up waiting until {what}"
        time.sleep(0.01)


# -- item 1: the temporary folder swapped for a link ---------------------------------------


@pytest.mark.parametrize("first", ["owner_first", "member_first"])
def test_a_swap_while_the_owner_waits_on_the_database_deletes_nothing_outside(shared, roles, first):
    owner, member, group = roles
    cache = group_cache(shared, group)
    target = owner_only_folder(shared, owner)
    start_cache(owner if first == "owner_first" else member, cache)
    database = cache / "database" / "hispec_calibrations.db"

    holder = start_as(member, "hold_db", cache, target=str(target))
    store = None
    try:
        assert hear(holder) == "locked"
        store = start_as(owner, "store", cache)
        # The owner's store has checked its folders and opened the database; where
        # it still needs the write lock it waits for the member's. Now the member
        # swaps the folder.
        wait_until(
            lambda: has_open(store.pid, database) or store.poll() is not None,
            "the owner opened the database",
        )
        say(holder, "swap")
        assert hear(holder) == "swapped"
        if store.poll() is not None:
            # A store that needed no write lock to open started before the swap:
            # the next one meets the link, and refuses it rather than walk through.
            assert run_to_end(store) == "started"
            store = start_as(owner, "store", cache)
            assert store.wait(timeout=120) == 1
            assert "UnsafeCachePathError" in store.stderr.read()
            say(holder, "release")
        else:
            say(holder, "release")
            assert run_to_end(store) == "started"
        assert holder.wait(timeout=60) == 0, holder.stderr.read()
    finally:
        for child in (holder, store):
            if child is not None:
                child.kill()
                child.wait(timeout=60)
    assert_untouched(target)


@pytest.mark.parametrize("first", ["owner_first", "member_first"])
def test_the_cleaning_races_a_member_swapping_the_folder_and_deletes_nothing_outside(
    shared, roles, first
):
    owner, member, group = roles
    cache = group_cache(shared, group)
    target = owner_only_folder(shared, owner)
    start_cache(owner if first == "owner_first" else member, cache)

    cleaner = start_as(owner, "clean", cache, rounds=200, linked=20)
    swapper = start_as(member, "swap", cache, target=str(target))
    try:
        assert hear(cleaner) == hear(swapper) == "ready"
        order = (cleaner, swapper) if first == "owner_first" else (swapper, cleaner)
        for child in order:
            say(child, "go")
        cleaned = json.loads(run_to_end(cleaner))
        swapper.stdin.close()
        swaps = int(run_to_end(swapper))
    finally:
        for child in (cleaner, swapper):
            child.kill()
            child.wait(timeout=60)
    assert cleaned["rounds"] >= 200 and swaps > 0
    assert cleaned["linked"] >= 20, "the race never happened: the folder was never seen a link"
    assert_untouched(target)
    assert (cache / "tmp" / "hispec").is_dir()


# -- item 2: the database folder swapped for a link ---------------------------------------


def test_a_database_folder_linked_out_of_the_cache_gets_no_database(shared, roles):
    owner, member, group = roles
    cache = group_cache(shared, group)
    target = owner_only_folder(shared, owner)
    start_cache(member, cache)
    # The member moves the database away and leaves a link to the owner's folder.
    moved = cache / "database-moved"
    (cache / "database").rename(moved)
    (cache / "database").symlink_to(target, target_is_directory=True)
    os.lchown(cache / "database", member.uid, group)

    result = start_as(owner, "store", cache)
    result.wait(timeout=120)
    error = result.stderr.read()
    assert result.returncode != 0
    assert "UnsafeCachePathError" in error and str(cache / "database") in error
    assert not (target / "hispec_calibrations.db").exists()
    assert sorted(p.name for p in target.iterdir()) == ["old-folder", "old.part", "old.txt"]
    assert_untouched(target)

"""A status asked again of an unchanged cache lists no folder; any change is seen.

The census of a cache's files is kept beside its database between runs
(``koa_middleware.cache.census_memo``). These tests show it reused while
nothing changed, and counted again, with the answer the folder itself gives,
after each kind of change: a file added or removed in the folder, a record
added, deleted or given another file name or size in place (also by another
SQLite client), a read-only cache's file removed. A count taken while a
folder or the database may still be changing within its clock's tick is not
kept; nor is a count too large to be worth reading back, nor, when read back,
one that is not as written (a name leading out of the folder, a damaged
value, a link planted at its name).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.cache import census, census_memo
from koa_middleware.cache.census import count_files
from koa_middleware.cache.report import cache_status, folder_size
from support.models import FileModel, dark

MEMO = "hispec_calibrations.db.census"


def register(store, count: int, start: int = 0) -> list[dict]:
    return [
        store.register_calibration(FileModel(dark(i), os.urandom(500 + i)))[1]
        for i in range(start, start + count)
    ]


def settle(*paths) -> None:
    """Date the last change of folders or files 10 s back, past the window a change may hide in."""
    past = time.time_ns() - 10 * 10**9
    for path in paths:
        if os.path.exists(path):
            os.utime(path, ns=(past, past))


def settle_all(store, *more) -> None:
    """The calibrations folder, the database and its log, and ``more``, dated back."""
    database = store.local_db.db_path
    settle(store.layout.calibrations_dir, database, f"{database}-wal", *more)


def kept(store) -> str | None:
    """The kept count's text, or None when there is none."""
    path = store.layout.database_dir / MEMO
    return path.read_text() if path.is_file() else None


def census_of(store):
    return store.cache.file_census()


def truth(store):
    """The census counted from the folders, and the folder's bytes measured file by file."""
    cache = store.cache
    readonly = [c.layout.calibrations_dir for c in cache.readonly.caches]
    counted = count_files(cache.db, cache.layout.calibrations_dir, readonly)
    return counted.missing, folder_size(cache.layout.calibrations_dir)


@pytest.fixture
def no_listing(monkeypatch):
    """Make listing a folder fail the test for the length of a block."""

    def listed(folder):
        raise AssertionError(f"{folder} was listed")

    @contextlib.contextmanager
    def forbid():
        with monkeypatch.context() as patch:  # undoes this patch only, not the fixtures'
            patch.setattr(census, "names_in", listed)
            yield

    return forbid()


def test_an_unchanged_cache_is_counted_once(store, no_listing):
    records = register(store, 4)
    folder = store.layout.calibrations_dir
    (folder / records[2]["filename"]).unlink()
    (folder / "partial.part").write_bytes(b"p" * 300)
    settle_all(store)
    first = census_of(store)
    assert kept(store) is not None
    with no_listing:
        again = census_of(store)
        status = cache_status(store.cache)
    assert again == first
    assert again.missing == [records[2]["filename"]]
    assert again.own_bytes == folder_size(folder)
    assert status["files_not_downloaded"] == 1
    assert status["cache_bytes"]["calibrations"] == folder_size(folder)


def test_a_file_with_no_record_is_measured_again_each_time(store, no_listing):
    register(store, 2)
    folder = store.layout.calibrations_dir
    stray = folder / "partial.part"
    stray.write_bytes(b"p" * 300)
    settle_all(store)
    census_of(store)
    with stray.open("ab") as grown:  # grows in place: no new name in the folder
        grown.write(b"q" * 1000)
    with no_listing:
        assert census_of(store).own_bytes == folder_size(folder)


def other_client(store, sql: str, *params) -> None:
    with sqlite3.connect(store.local_db.db_path) as other:
        other.execute(sql, params)


RENAME = 'UPDATE "hispec" SET filename = ? WHERE id = ?'


def rename_record_here(store, records):
    """A record given another file name in place, through the store's own connection."""
    store.local_db.conn.execute(RENAME, ("dark_x.fits", records[0]["id"]))


def rename_record_by_another_client(store, records):
    other_client(store, RENAME, "dark_x.fits", records[0]["id"])


def delete_record(store, records):
    other_client(store, 'DELETE FROM "hispec" WHERE id = ?', records[3]["id"])


def add_record(store, records):
    register(store, 1, start=50)


def remove_file(store, records):
    (store.layout.calibrations_dir / records[2]["filename"]).unlink()


def add_stray(store, records):
    (store.layout.calibrations_dir / "stray.bin").write_bytes(b"s" * 123)


@pytest.mark.parametrize(
    "change",
    [
        rename_record_here,
        rename_record_by_another_client,
        delete_record,
        add_record,
        remove_file,
        add_stray,
    ],
    ids=lambda change: change.__name__,
)
def test_every_change_is_counted_again(store, change):
    records = register(store, 4)
    (store.layout.calibrations_dir / records[3]["filename"]).unlink()
    settle_all(store)
    before = census_of(store)
    assert kept(store) is not None
    change(store, records)
    missing, own_bytes = truth(store)
    after = census_of(store)
    assert (after.missing, after.own_bytes) == (missing, own_bytes)
    assert after != before


def test_a_size_changed_in_place_by_another_client_is_counted(store):
    records = register(store, 2)
    settle_all(store)
    before = census_of(store)
    other_client(
        store, 'UPDATE "hispec" SET file_size = file_size + 1000 WHERE id = ?', records[1]["id"]
    )
    assert census_of(store).own_bytes == before.own_bytes + 1000  # sizes come from the records


def test_a_file_removed_from_a_readonly_cache_is_seen(tmp_path, monkeypatch, no_koa_environment):
    with CalibrationStore("hispec", str(tmp_path / "shared"), connect_remote=False) as shared:
        in_shared = register(shared, 3)
    monkeypatch.setenv("KOA_CALIBRATION_CACHE_READONLY", str(tmp_path / "shared"))
    shared_folder = tmp_path / "shared" / "calibrations" / "hispec"
    with CalibrationStore("hispec", str(tmp_path / "mine"), connect_remote=False) as store:
        settle_all(store, shared_folder)
        assert census_of(store).missing == []
        assert kept(store) is not None
        (shared_folder / in_shared[1]["filename"]).unlink()
        assert census_of(store).missing == [in_shared[1]["filename"]]


def test_a_folder_changed_within_the_last_two_seconds_is_not_kept(store):
    register(store, 2)
    census_of(store)  # the folder just got its files
    assert kept(store) is None
    settle_all(store)
    census_of(store)
    assert kept(store) is not None


def test_a_count_naming_many_files_is_not_kept(store, monkeypatch):
    records = register(store, 3)
    for record in records:
        (store.layout.calibrations_dir / record["filename"]).unlink()
    settle_all(store)
    monkeypatch.setattr(census_memo, "MEMO_NAMES", 2)
    assert len(census_of(store).missing) == 3
    assert kept(store) is None


def test_a_database_written_within_the_last_two_seconds_is_not_kept(store):
    register(store, 2)
    settle(store.layout.calibrations_dir)  # the folder is settled, the database not yet
    census_of(store)
    assert kept(store) is None
    settle_all(store)
    census_of(store)
    assert kept(store) is not None


def planted(store, **changes) -> dict:
    """The kept count rewritten with ``changes`` (as a member of the cache's group could)."""
    path = store.layout.database_dir / MEMO
    memo = json.loads(path.read_text())
    memo.update(changes)
    path.write_text(json.dumps(memo))
    return memo


@pytest.mark.parametrize(
    "changes",
    [
        {"measured": ["../../sentinel"]},
        {"measured": [".."]},
        {"measured": ["a\0b"]},
        {"missing": ["../sentinel"]},
        {"missing": "dark_0.fits"},
        {"recorded_bytes": -5},
        {"recorded_bytes": True},
        {"recorded_bytes": "12"},
        {"measured": [7]},
    ],
    ids=repr,
)
def test_a_kept_count_not_as_written_is_counted_again(store, tmp_path, changes):
    register(store, 2)
    sentinel = tmp_path / "sentinel"
    sentinel.write_bytes(b"x" * 5000)
    settle_all(store)
    census_of(store)
    planted(store, **changes)
    settle_all(store)
    missing, own_bytes = truth(store)
    again = census_of(store)
    assert (again.missing, again.own_bytes) == (missing, own_bytes)
    assert sentinel.read_bytes() == b"x" * 5000


@pytest.mark.parametrize("text", ["{not json", "[]", '{"key": 1}', "null", '"text"'])
def test_a_damaged_kept_count_is_counted_again(store, text):
    register(store, 2)
    settle_all(store)
    (store.layout.database_dir / MEMO).write_text(text)
    missing, own_bytes = truth(store)
    again = census_of(store)
    assert (again.missing, again.own_bytes) == (missing, own_bytes)
    assert json.loads(kept(store))["missing"] == []


def test_a_link_planted_at_the_kept_count_is_replaced_never_followed(store, tmp_path):
    register(store, 2)
    sentinel = tmp_path / "sentinel.json"
    sentinel.write_text('{"planted": true}')
    (store.layout.database_dir / MEMO).symlink_to(sentinel)
    settle_all(store)
    missing, own_bytes = truth(store)
    again = census_of(store)
    assert (again.missing, again.own_bytes) == (missing, own_bytes)
    assert sentinel.read_text() == '{"planted": true}'
    assert not (store.layout.database_dir / MEMO).is_symlink()
    assert json.loads(kept(store))["missing"] == []


def test_a_folder_at_the_kept_count_s_name_leaves_the_count_unkept(store):
    register(store, 2)
    (store.layout.database_dir / MEMO).mkdir()
    settle_all(store)
    missing, own_bytes = truth(store)
    again = census_of(store)
    assert (again.missing, again.own_bytes) == (missing, own_bytes)
    folders = (store.layout.database_dir, store.layout.tmp_dir)
    assert [p for folder in folders for p in folder.iterdir() if p.name.endswith(".part")] == []


def test_a_pipe_planted_at_the_kept_count_s_name_is_not_waited_on(store):
    register(store, 2)
    os.mkfifo(store.layout.database_dir / MEMO)
    settle_all(store)
    missing, own_bytes = truth(store)
    answers = []
    # Opening a pipe to read waits for a writer: a daemon thread, so that a wait fails the test.
    counting = threading.Thread(target=lambda: answers.append(census_of(store)), daemon=True)
    counting.start()
    counting.join(timeout=20)
    assert answers, "the census waited on the pipe"
    assert (answers[0].missing, answers[0].own_bytes) == (missing, own_bytes)
    assert json.loads(kept(store))["missing"] == []  # replaced by a kept count


def test_a_retraction_after_a_kept_count_is_seen_by_status(store):
    records = register(store, 3)
    (store.layout.calibrations_dir / records[2]["filename"]).unlink()
    settle_all(store)
    before = cache_status(store.cache)
    assert kept(store) is not None and before["retracted"] == 0
    store.retract(records[0]["id"], "hot pixels")
    settle_all(store)  # as if the retraction were long ago: the database's key still differs
    after = cache_status(store.cache)
    assert after["retracted"] == 1
    assert [m["id"] for m in after["missing_files"]] == [records[2]["id"]]
    assert after["cache_bytes"]["calibrations"] == folder_size(store.layout.calibrations_dir)

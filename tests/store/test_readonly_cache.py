"""Read-only caches (KOA_CALIBRATION_CACHE_READONLY): searched first, never written, topped up.

A first store fills a cache from a real archive; a second store, with an empty
writable cache of its own, names the first in ``KOA_CALIBRATION_CACHE_READONLY``.
The archive sits behind a relay that notes every request, so the tests can tell
which files were downloaded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest

from koa_middleware import CalibrationStore
from koa_middleware.selectors import NearestInTimeSelector
from support.archive import ArchiveServer, create_token, publish
from support.models import FileModel, dark
from support.relay import Relay
from support.shared_account import account_folder, reachable_folder, run_as, unused_ids

FILES = "GET /api/calibrations/hispec/files/"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("readonly-archive")
    with ArchiveServer(root, instruments=("hispec",)) as server:
        yield server, create_token(root, "write")


@pytest.fixture(autouse=True)
def _environment(no_koa_environment, monkeypatch):
    monkeypatch.setenv("KOA_PROGRESS", "0")
    monkeypatch.delenv("KOA_CALIBRATION_CACHE_READONLY", raising=False)


def fill_shared_cache(archive, cache: Path, days: int = 3) -> tuple[list[dict], dict]:
    """Publish ``days`` calibrations; a store on ``cache`` gets all but the last, and makes one.

    Returns the published records and the record of the calibration made locally.
    """
    server, token = archive
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base_url + "/", headers=headers) as client:
        published = [
            publish(client, os.urandom(3000 + day), datetime_obs=f"2024-02-{10 + day:02d}")
            for day in range(days)
        ]
    with CalibrationStore("hispec", str(cache), url=server.base_url, token=token) as first:
        for record in published[:-1]:
            first.get_calibration(record["id"])
        _, local = first.register_calibration(FileModel(dark(7, datetime_obs="2024-03-01")))
    return published, local


def contents(folder: Path) -> list[tuple[Path, int, int]]:
    """The cache's files and when they changed; SQLite's own -wal and -shm files aside.

    Root ignores permissions, so SQLite may create those two files even in a
    read-only folder: they hold no records of their own.
    """
    return sorted(
        (p, p.stat().st_mtime_ns, p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    )


def read_only(folder: Path) -> None:
    """Take away every write permission under ``folder``."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(stat.S_IMODE(path.lstat().st_mode) & ~0o222)


def test_a_second_store_uses_the_shared_files_in_place_and_downloads_the_rest(
    archive, tmp_path, monkeypatch
):
    server, token = archive
    shared = tmp_path / "shared"
    published, local = fill_shared_cache(archive, shared)
    read_only(shared)
    before = contents(shared)
    monkeypatch.setenv("KOA_CALIBRATION_CACHE_READONLY", os.pathsep.join([str(shared), ""]))
    with Relay(server.port) as relay:
        url = relay.rewrite(server.base_url)
        with CalibrationStore(
            "hispec", str(tmp_path / "own"), url=url, token=token, sync_on_init=False
        ) as store:
            # Every record of the shared cache is seen, the local one too.
            ids = {r["id"] for r in store.query(cal_type="dark")}
            assert ids == {r["id"] for r in published} | {local["id"]}
            for record in [*published[:-1], local]:
                path, got = store.get_calibration(record["id"])
                assert Path(path).parent == shared / "calibrations" / "hispec", path
                assert got["id"] == record["id"]
            assert relay.count(FILES) == 0
            selector = NearestInTimeSelector("dark", match=())
            path, got = store.select_and_get_calibration({"datetime_obs": "2024-02-10"}, selector)
            assert got["id"] == published[0]["id"]
            assert Path(path).is_relative_to(shared)
            # What the shared cache lacks comes from the archive into the store's own cache.
            path, _ = store.get_calibration(published[-1]["id"])
            assert Path(path).parent == tmp_path / "own" / "calibrations" / "hispec"
            assert relay.count(FILES) == 1
    assert contents(shared) == before


def test_prefetch_takes_the_shared_files_in_place_and_downloads_only_the_rest(
    archive, tmp_path, monkeypatch
):
    server, token = archive
    shared = tmp_path / "shared"
    published, _local = fill_shared_cache(archive, shared)
    read_only(shared)
    monkeypatch.setenv("KOA_CALIBRATION_CACHE_READONLY", str(shared))
    with Relay(server.port) as relay:
        url = relay.rewrite(server.base_url)
        with CalibrationStore(
            "hispec", str(tmp_path / "own"), url=url, token=token, sync_on_init=False
        ) as store:
            paths = store.prefetch([r["id"] for r in published])
            assert relay.count(FILES) == 1  # only the file the shared cache lacks
    assert [Path(p).is_relative_to(shared) for p in paths] == [True] * (len(published) - 1) + [
        False
    ]


def test_the_writable_cache_wins_and_a_changed_shared_file_is_not_served(
    archive, tmp_path, monkeypatch, caplog
):
    server, token = archive
    shared = tmp_path / "shared"
    published, _ = fill_shared_cache(archive, shared)
    own = tmp_path / "own"
    with CalibrationStore("hispec", str(own), connect_remote=False) as store:
        store.local_db.add({**published[0], "note": "mine"})
    tampered = shared / "calibrations" / "hispec" / published[1]["filename"]
    tampered.write_bytes(b"\0" * tampered.stat().st_size)
    monkeypatch.setenv("KOA_CALIBRATION_CACHE_READONLY", str(shared))
    with Relay(server.port) as relay:
        url = relay.rewrite(server.base_url)
        with CalibrationStore("hispec", str(own), url=url, token=token) as store:
            assert store.query(cal_id=published[0]["id"])["note"] == "mine"
            path, _ = store.get_calibration(published[1]["id"])
            assert Path(path).parent == own / "calibrations" / "hispec"
            assert relay.count(FILES) == 1
    assert "read-only cache" in caplog.text


@pytest.mark.needs_root("to run a store as another account")
@pytest.mark.parametrize("writer", ["closed", "open"], ids=["no_writer", "writer_open"])
def test_a_store_of_another_account_reads_a_cache_it_cannot_write(archive, writer):
    server, token = archive
    uid, gid = unused_ids(2)
    with reachable_folder() as folder, Relay(server.port) as relay:
        shared = folder / "shared"
        published, local = fill_shared_cache(archive, shared)
        writer_store = None
        try:
            if writer == "open":
                # A writer that holds the database open, with a record not yet
                # checkpointed: it is in the -wal file, which the reader must see.
                writer_store = CalibrationStore("hispec", str(shared), connect_remote=False)
                _, late = writer_store.register_calibration(
                    FileModel(dark(8, datetime_obs="2024-03-02"))
                )
                assert Path(f"{writer_store.local_db.db_path}-shm").exists()
            else:
                late = None
                assert not Path(f"{shared}/database/hispec_calibrations.db-shm").exists()
            for path in [shared, *shared.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)  # root's, readable by all
            home = account_folder(folder, uid, gid)
            wanted = [r["id"] for r in published] + [local["id"]]
            if late is not None:
                wanted.append(late["id"])
            done = run_as(
                uid,
                gid,
                [gid],
                0o022,
                home / "cache",
                [["get", wanted]],
                env={
                    "HOME": str(home),
                    "XDG_STATE_HOME": str(home / "state"),
                    "KOA_CALIBRATIONS_URL": relay.rewrite(server.base_url),
                    "KOA_API_TOKEN": token,
                    "KOA_CALIBRATION_CACHE_READONLY": str(shared),
                },
            )
        finally:
            if writer_store is not None:
                writer_store.close()
        paths = dict(zip(wanted, map(Path, done["get"]), strict=True))
        own = home / "cache" / "calibrations" / "hispec"
        assert paths.pop(published[-1]["id"]).parent == own
        for cal_id, path in paths.items():
            assert path.parent == shared / "calibrations" / "hispec", cal_id
        assert relay.count(FILES) == 1


def test_records_added_to_a_shared_cache_later_are_seen_at_the_next_lookup(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    with CalibrationStore("hispec", str(first), connect_remote=False) as writer:
        _, early = writer.register_calibration(FileModel(dark(1, datetime_obs="2024-04-01")))
    monkeypatch.setenv("KOA_CALIBRATION_CACHE_READONLY", os.pathsep.join([str(first), str(second)]))
    with CalibrationStore("hispec", str(tmp_path / "own"), connect_remote=False) as store:
        assert [r["id"] for r in store.query(cal_type="dark")] == [early["id"]]
        # The second read-only cache appears, and fills, while the store is open.
        with CalibrationStore("hispec", str(second), connect_remote=False) as writer:
            _, late = writer.register_calibration(FileModel(dark(2, datetime_obs="2024-04-02")))
            path, record = store.get_calibration(late["id"])
            assert Path(path).parent == second / "calibrations" / "hispec"
            assert record["file_md5"] == late["file_md5"]
        with CalibrationStore("hispec", str(first), connect_remote=False) as writer:
            _, later = writer.register_calibration(FileModel(dark(3, datetime_obs="2024-04-03")))
        selector = NearestInTimeSelector("dark", match=())
        path, record = store.select_and_get_calibration({"datetime_obs": "2024-04-03"}, selector)
        assert record["id"] == later["id"]
        assert Path(path).parent == first / "calibrations" / "hispec"
        assert list((tmp_path / "own" / "calibrations" / "hispec").iterdir()) == []

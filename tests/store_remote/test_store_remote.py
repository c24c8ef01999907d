"""CalibrationStore against a real koa-archive: every remote method of the reference."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from koa_middleware.errors import (
    AuthenticationError,
    CalibrationNotFoundError,
    RemoteUnavailableError,
)
from koa_middleware.hashing import file_md5
from support.archive import ArchiveServer, create_token
from support.children import start_child
from support.models import FileModel, dark
from support.relay import Relay


def publish(
    open_store, archive, count: int = 3, size: int = 2048, **fields
) -> tuple[list[dict], dict]:
    """Register ``count`` calibrations in a publishing store and push them; return them."""
    publisher = open_store(
        archive.url(2), archive.tokens["write"], name="publisher", sync_on_init=False
    )
    records, data = [], {}
    for i in range(count):
        payload = os.urandom(size + i)
        _, record = publisher.register_calibration(
            FileModel(dark(i, **fields), data=payload), origin="KECK"
        )
        records.append(record)
        data[record["id"]] = payload
    pushed = publisher.sync_records_to_remote()
    assert sorted(r["id"] for r in pushed) == sorted(r["id"] for r in records)
    return records, data


def test_round_trip_between_two_caches(archive, open_store, protocol):
    records, data = publish(open_store, archive, count=4)
    reader = open_store(archive.url(protocol), archive.tokens["read"], name="reader")
    assert len(reader.local_db) == 4  # sync_on_init
    for record in records:
        path, got = reader.get_calibration(record["id"])
        assert Path(path).read_bytes() == data[record["id"]]
        assert got["file_md5"] == record["file_md5"]
        assert Path(path).parent == Path(reader.data_dir)


def test_get_calibration_fetches_record_and_file(archive, open_store, protocol):
    records, data = publish(open_store, archive, count=2)
    store = open_store(archive.url(protocol), archive.tokens["read"], name="b", sync_on_init=False)
    assert len(store.local_db) == 0
    path, record = store.get_calibration(records[1]["id"])
    assert Path(path).read_bytes() == data[records[1]["id"]]
    assert store.local_db.query_id(records[1]["id"])["filename"] == record["filename"]
    path, _ = store.get_calibration(records[0]["filename"])  # by file name
    assert file_md5(path) == records[0]["file_md5"]
    with pytest.raises(CalibrationNotFoundError, match="neither in the local cache nor"):
        store.get_calibration("7c4e28ba-2fa1-4d2b-883f-0016d3cca427")


def test_download_calibration_file_does_not_record(archive, open_store, protocol):
    records, data = publish(open_store, archive, count=1)
    store = open_store(archive.url(protocol), archive.tokens["read"], name="b", sync_on_init=False)
    path = store.download_calibration_file(records[0]["id"])
    assert Path(path).read_bytes() == data[records[0]["id"]]
    assert len(store.local_db) == 0
    path = store.download_calibration_file(records[0])
    assert Path(path).is_file()


def test_missing_records_both_ways(archive, open_store, protocol):
    records, _ = publish(open_store, archive, count=3)
    store = open_store(archive.url(protocol), archive.tokens["write"], name="b", sync_on_init=False)
    missing = store.get_missing_records(source="remote", mode="id")
    assert sorted(r["id"] for r in missing) == sorted(r["id"] for r in records)
    assert len(store.get_missing_records(mode="last_updated")) == 3
    store.sync_records_from_remote(cals=[records[0]["id"]])
    assert [r["id"] for r in store.local_db.rows] == [records[0]["id"]]
    assert len(store.get_missing_records()) == 2
    _, mine = store.register_calibration(FileModel(dark(20)))
    local_only = store.get_missing_records(source="local")
    assert [r["id"] for r in local_only] == [mine["id"]]
    assert store.get_missing_records(source="local", mode="last_updated")[0]["id"] == mine["id"]


def test_sync_modes_and_positional_mode(archive, open_store, protocol):
    publish(open_store, archive, count=3)
    store = open_store(archive.url(protocol), archive.tokens["read"], name="b", sync_on_init=False)
    added = store.sync_records_from_remote("last_updated")
    assert len(added) == 3 and len(store.local_db) == 3
    assert store.sync_records_from_remote() == []
    assert store.get_last_updated() == store.get_last_updated(source="local")
    remote = store.query(source="remote", cal_type="dark")
    assert len(remote) == 3
    with pytest.raises(ValueError, match="mode"):
        store.sync_records_from_remote(mode="everything")


def test_use_cached_false_fetches_a_fresh_copy(archive, open_store):
    records, data = publish(open_store, archive, count=1)
    store = open_store(archive.url(2), archive.tokens["read"], name="b", use_cached=False)
    path, _ = store.get_calibration(records[0]["id"])
    Path(path).write_bytes(b"\0" * len(data[records[0]["id"]]))  # same size, wrong bytes
    path, _ = store.get_calibration(records[0]["id"])
    assert Path(path).read_bytes() == data[records[0]["id"]]


def test_push_needs_a_write_token(archive, open_store):
    store = open_store(archive.url(2), archive.tokens["read"], name="b", sync_on_init=False)
    store.register_calibration(FileModel(dark(1)))
    with pytest.raises(AuthenticationError, match="403"):
        store.sync_records_to_remote()
    assert store.get_missing_records(source="local")  # nothing reached the archive


def test_revoked_or_wrong_token(archive, open_store, caplog):
    # The store still opens (and works from its cache), saying why it could not sync;
    # an operation that needs the archive then raises.
    caplog.set_level(logging.WARNING)
    store = open_store(archive.url(2), "not-a-token", name="b")
    assert "Working from the local cache only" in caplog.text and "bearer token" in caplog.text
    assert "not-a-token" not in caplog.text
    assert store.query(cal_type="dark") == []
    with pytest.raises(AuthenticationError, match="bearer token"):
        store.sync_records_from_remote()


def test_keck_default_without_credentials_stays_local(tmp_path, monkeypatch, instrument, caplog):
    from koa_middleware import CalibrationStore

    caplog.set_level(logging.INFO)
    with CalibrationStore(instrument, str(tmp_path / "c")) as store:
        assert store.remote_db is None
    assert "KOA_API_TOKEN" in caplog.text


def test_explicit_url_without_credentials_connects_anonymously(tmp_path, instrument, open_store):
    with ArchiveServer(tmp_path / "anon", anonymous_read=True, instruments=(instrument,)) as server:
        store = open_store(server.base_url, None, name="anon")
        assert store.remote_db is not None
        assert store.get_last_updated() is None


def test_offline_archive_keeps_the_cache_working(tmp_path, instrument, open_store, caplog):
    root = tmp_path / "offline"
    token = create_token(root, "write")
    with ArchiveServer(root, instruments=(instrument,)) as server:
        url = server.base_url
        store = open_store(url, token, name="a")
        path, record = store.register_calibration(FileModel(dark(1)))
        store.sync_records_to_remote()
        store.close()
    caplog.set_level(logging.WARNING)
    store = open_store(url, token, name="a")  # the archive is down now
    assert "local cache only" in caplog.text
    assert store.get_calibration(record["id"])[0] == path
    with pytest.raises(RemoteUnavailableError, match="127.0.0.1"):
        store.sync_records_from_remote()


def test_token_takes_precedence_over_keck_login(archive, open_store, monkeypatch):
    monkeypatch.setenv("KECK_OBSERVER_EMAIL", "observer@example.org")
    monkeypatch.setenv("KECK_OBSERVER_PASSWORD", "secret-password")
    store = open_store(archive.url(2), archive.tokens["read"], name="b")
    assert "bearer token" in store.remote_db.credentials.description
    assert "secret-password" not in repr(store) + repr(store.remote_db)
    assert archive.tokens["read"] not in repr(store) + repr(store.remote_db)


def test_four_processes_fetching_one_id_download_once(archive, open_store, tmp_path, instrument):
    records, data = publish(open_store, archive, count=1, size=1_500_000)
    big = records[0]  # 0.75 s through the relay: long enough for all four to ask at once
    server = archive.servers[2]
    with Relay(server.port, rate=2e6) as relay:
        env = {
            **os.environ,
            "KOA_CALIBRATIONS_URL": relay.rewrite(server.base_url),
            "KOA_API_TOKEN": archive.tokens["read"],
        }
        cache = str(tmp_path / "shared-cache")
        procs = [
            start_child(
                "get_and_check",
                instrument,
                cache,
                big["id"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
            assert out.startswith("True ")
        assert relay.count(f"/{instrument}/files/{big['id']}") == 1
    assert len({out.split()[1] for out, _ in outputs}) == 1

"""Sync never stops for one bad record: it stores what it can and sets aside the rest.

Records an honest client cannot store are planted straight into a real
``koa-archive``'s catalog (SQLite), and served by its v2 and v1 servers.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.client.sync import (
    missing_records,
    pull_records,
    set_aside_key,
    sync_from_archive,
)
from support.published import publish
from support.scripted_http import ScriptedHTTPServer, json_answer, raw_answer


def plant(shared_archive, cal_id: str, **columns) -> None:
    """Change a record in the archive's catalog, behind the archive's back."""
    sets = ", ".join(f"{name} = ?" for name in columns)
    values = [json.dumps(v) if isinstance(v, dict) else v for v in columns.values()]
    with sqlite3.connect(shared_archive.root / "archive.db") as catalog:
        catalog.execute(f"UPDATE records SET {sets} WHERE id = ?", [*values, cal_id])  # noqa: S608


@pytest.fixture
def bad_archive(publisher, shared_archive, tmp_path, local_db):
    """Six records on the archive; four of them no client can store here."""
    records = publish(publisher, tmp_path / "files", 6)
    ids = [rec["id"] for rec in records]
    plant(shared_archive, ids[1], filename="../outside.fits")
    plant(shared_archive, ids[2], extra={"big": 2**70})
    plant(shared_archive, ids[3], extra={f"col{i}": i for i in range(2100)})
    # A local record already claims the file name of ids[4] under another id
    # (updated long ago: a last_updated sync still asks for the archive's records).
    local_db.add(
        {
            "id": str(uuid.uuid4()),
            "filename": records[4]["filename"],
            "cal_type": "dark",
            "datetime_obs": "2026-01-01T00:00:00.000",
            "last_updated": "2000-01-01T00:00:00.000",
        }
    )
    return {"good": {ids[0], ids[5]}, "bad": set(ids[1:5]), "clash": ids[4], "records": records}


def test_bad_records_are_set_aside_and_the_rest_stored(
    remote, local_db, bad_archive, caplog, tmp_path
):
    caplog.set_level(logging.WARNING)
    report = sync_from_archive(local_db, remote)
    stored = set(local_db.get_column("id"))
    assert bad_archive["good"] <= stored
    assert not bad_archive["bad"] & stored
    assert {rec["id"] for rec in report.added} == bad_archive["good"]
    assert set(report.set_aside) == bad_archive["bad"]
    assert all(reason for reason in report.set_aside.values())
    for cal_id in bad_archive["bad"]:
        assert cal_id in caplog.text
    assert "big" in report.set_aside[bad_archive["records"][2]["id"]] or "large" in (
        report.set_aside[bad_archive["records"][2]["id"]].lower()
    )
    # Kept for the next sync.
    kept = json.loads(local_db.get_meta(set_aside_key(remote)))
    assert set(kept) == bad_archive["bad"]
    assert not (tmp_path / "outside.fits").exists()


def test_set_aside_records_are_tried_again_by_the_next_sync(
    remote, local_db, bad_archive, shared_archive
):
    first = sync_from_archive(local_db, remote)
    assert len(first.set_aside) == 4
    fixed = bad_archive["records"][1]
    plant(shared_archive, fixed["id"], filename=fixed["filename"])
    second = sync_from_archive(local_db, remote)
    assert [rec["id"] for rec in second.added] == [fixed["id"]]
    assert set(second.set_aside) == bad_archive["bad"] - {fixed["id"]}
    assert fixed["id"] in set(local_db.get_column("id"))
    kept = json.loads(local_db.get_meta(set_aside_key(remote)))
    assert set(kept) == bad_archive["bad"] - {fixed["id"]}


def test_last_updated_mode_sets_aside_too(remote, local_db, bad_archive):
    report = sync_from_archive(local_db, remote, mode="last_updated")
    assert {rec["id"] for rec in report.added} == bad_archive["good"]
    assert set(report.set_aside) == bad_archive["bad"]


def test_pull_records_stays_strict_unless_asked(remote, local_db, bad_archive):
    added = pull_records(local_db, remote, set_aside=True)
    assert {rec["id"] for rec in added} == bad_archive["good"]


def test_store_sync_exposes_what_was_set_aside(
    shared_archive, instrument, bad_archive, tmp_path, monkeypatch, protocol
):
    monkeypatch.setenv("KOA_CALIBRATIONS_URL", shared_archive.url(protocol))
    monkeypatch.setenv("KOA_API_TOKEN", shared_archive.tokens["read"])
    monkeypatch.setenv("KOA_PROGRESS", "0")
    # The store's own database has no record that claims a file name of the archive's.
    bad = bad_archive["bad"] - {bad_archive["clash"]}
    with CalibrationStore(instrument, str(tmp_path / "cache")) as store:
        assert set(store.last_sync.set_aside) == bad
        assert {rec["id"] for rec in store.last_sync.added} == bad_archive["good"] | {
            bad_archive["clash"]
        }
        assert store.sync_records_from_remote() == []
        assert set(store.last_sync.set_aside) == bad


@pytest.mark.parametrize(
    "answer",
    [
        raw_answer(b"<html>Maintenance</html>", content_type="text/html"),
        raw_answer(b'{"records": [1, 2'),
        json_answer({"records": "nope"}),
    ],
    ids=["html", "invalid-json", "wrong-shape"],
)
def test_store_opens_whatever_the_sync_on_start_meets(tmp_path, monkeypatch, caplog, answer):
    with ScriptedHTTPServer() as server:
        server.route("GET", "/api/healthz", json_answer({"status": "ok", "protocol": 2}))
        server.route("GET", "/api/hispec/changes", answer)
        monkeypatch.setenv("KOA_CALIBRATIONS_URL", server.url + "/api")
        monkeypatch.setenv("KOA_API_TOKEN", "t0ken")
        monkeypatch.setenv("KOA_PROGRESS", "0")
        caplog.set_level(logging.WARNING)
        with CalibrationStore("hispec", str(tmp_path / "cache")) as store:
            assert store.query() == []
        assert "local cache only" in caplog.text


def test_mode_id_brings_back_a_record_deleted_locally(remote, publisher, local_db, tmp_path):
    records = publish(publisher, tmp_path / "files", 4)
    pull_records(local_db, remote)
    gone = records[2]["id"]
    local_db.delete(gone)
    assert [rec["id"] for rec in missing_records(local_db, remote)] == [gone]
    assert [rec["id"] for rec in pull_records(local_db, remote)] == [gone]
    assert len(local_db) == 4
    assert pull_records(local_db, remote) == []


def test_mode_id_brings_back_a_record_deleted_behind_the_stores_back(
    remote, publisher, local_db, tmp_path
):
    """A row deleted with another SQLite client is missed by no sync (triggers count it)."""
    records = publish(publisher, tmp_path / "files", 4)
    pull_records(local_db, remote)
    assert pull_records(local_db, remote) == []  # the counts are now known to be equal
    gone = records[1]["id"]
    with sqlite3.connect(local_db.db_path) as other:
        other.execute(f'DELETE FROM "{local_db.table_name}" WHERE id = ?', (gone,))  # noqa: S608
    assert [rec["id"] for rec in pull_records(local_db, remote)] == [gone]
    assert len(local_db) == 4


def test_mode_id_after_a_sync_with_new_records_and_a_deleted_one(
    remote, publisher, local_db, tmp_path
):
    records = publish(publisher, tmp_path / "a", 3)
    pull_records(local_db, remote)
    local_db.delete(records[0]["id"])
    new = publish(publisher, tmp_path / "b", 2)
    added = {rec["id"] for rec in pull_records(local_db, remote)}
    assert added == {records[0]["id"]} | {rec["id"] for rec in new}
    assert len(local_db) == 5


def test_mode_id_brings_back_a_deleted_record_beside_one_registered_here(
    publisher, local_db, tmp_path, instrument
):
    """A record only here must not hide, in the counts, one of the archive's missing here."""
    records = publish(publisher, tmp_path / "files", 3)
    pull_records(local_db, publisher)
    local_db.add(
        {
            "id": str(uuid.uuid4()),
            "filename": "only_here.fits",
            "cal_type": "dark",
            "datetime_obs": "2026-01-01T00:00:00.000",
            "origin": "LOCAL",
        }
    )
    gone = records[1]["id"]
    local_db.delete(gone)
    assert len(local_db) == 3  # as many as the archive holds, yet one of them is missing
    assert [rec["id"] for rec in pull_records(local_db, publisher)] == [gone]
    assert set(local_db.get_column("id")) >= {rec["id"] for rec in records}


def test_ids_are_listed_only_when_the_counts_differ(shared_archive, local_db, tmp_path, instrument):
    """An incremental sync with nothing missing asks one count page, never every id."""
    from support.archive import make_client
    from support.relay import Relay

    def id_listings(relay: Relay) -> int:
        # The count check asks at most two ids; listing them all asks a full page.
        return sum("columns=id" in head and "limit=2" not in head for head in relay.heads)

    server = shared_archive.servers[2]
    with (
        Relay(server.port) as relay,
        make_client(
            relay.rewrite(shared_archive.url(2)), instrument, shared_archive.tokens["write"]
        ) as remote,
    ):
        records = publish(remote, tmp_path / "files", 3)
        pull_records(local_db, remote)  # counts compared, found equal, remembered
        relay.heads.clear()
        assert pull_records(local_db, remote) == []
        assert relay.count("columns=id") == 0  # nothing changed since: nothing to ask

        local_db.delete(records[0]["id"])
        relay.heads.clear()
        assert [rec["id"] for rec in pull_records(local_db, remote)] == [records[0]["id"]]
        assert id_listings(relay) == 1

        publish(remote, tmp_path / "more", 2)
        relay.heads.clear()
        assert len(pull_records(local_db, remote)) == 2
        assert relay.count("columns=id") == 1  # the count page only
        assert id_listings(relay) == 0


def test_anything_in_a_changes_page_that_is_not_a_record_is_set_aside(tmp_path):
    from koa_middleware.client.remote_database import RemoteCalibrationDB
    from koa_middleware.client.sync import cursor_key
    from koa_middleware.database.local_database import LocalCalibrationDB

    good = {
        "id": str(uuid.uuid4()),
        "filename": "good.fits",
        "cal_type": "dark",
        "datetime_obs": "2026-01-01T00:00:00.000",
        "origin": "KECK",
        "cal_version": "001",
        "last_updated": "2026-01-01T00:00:00.000",
    }
    page = {"records": [42, good, {"id": "not-a-uuid"}, ["x"]], "next": 4, "more": False}
    with ScriptedHTTPServer() as server:
        server.route("GET", "/api/healthz", json_answer({"status": "ok", "protocol": 2}))
        server.route("GET", "/api/hispec/changes", json_answer(page))
        server.route("GET", "/api/hispec/query", json_answer([good]))
        local = LocalCalibrationDB(tmp_path / "local.db", "hispec")
        with RemoteCalibrationDB("hispec", url=server.url + "/api", token="t") as remote:
            report = sync_from_archive(local, remote)
            assert [rec["id"] for rec in report.added] == [good["id"]]
            assert len(report.set_aside) == 3
            assert all("without a valid id" in key for key in report.set_aside)
            assert local.get_meta(cursor_key(remote)) == "4"
        local.close()

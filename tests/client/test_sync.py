"""Sync between a real LocalCalibrationDB and a real koa-archive (v2 and v1)."""

from __future__ import annotations

import os

import pytest

from koa_middleware.cache.layout import CacheLayout
from koa_middleware.client.downloads import prefetch
from koa_middleware.client.push import push_records
from koa_middleware.client.sync import cursor_key, missing_records, pull_records
from koa_middleware.database.local_database import LocalCalibrationDB
from koa_middleware.errors import ArchiveError, AuthenticationError, CalibrationNotFoundError
from koa_middleware.records import utc_now
from support.archive import make_client
from support.published import new_record, publish


def ids(records) -> set[str]:
    return {r["id"] for r in records}


def test_first_and_incremental_pull(remote, publisher, local_db, protocol, tmp_path):
    first = publish(publisher, tmp_path / "a", 5)
    added = pull_records(local_db, remote)
    assert ids(added) == ids(first) and len(local_db) == 5
    stored = local_db.query_id(first[0]["id"])
    assert stored["filename"] == first[0]["filename"] and stored["last_updated"]
    assert stored["spectrograph"] == first[0]["spectrograph"]
    assert pull_records(local_db, remote) == []
    more = publish(publisher, tmp_path / "b", 3)
    assert ids(pull_records(local_db, remote)) == ids(more)
    assert len(local_db) == 8
    cursor = local_db.get_meta(cursor_key(remote))
    assert (cursor is not None) == (protocol == 2)


def test_a_pull_returns_each_record_as_stored(remote, publisher, local_db, tmp_path):
    publish(publisher, tmp_path / "a", 7)
    added = pull_records(local_db, remote)
    assert len(added) == 7 and added[-1] == list(added)[6] and added[1:3] == list(added)[1:3]
    for record in added:
        stored = local_db.query_id(record["id"])
        assert record == {key: stored[key] for key in record}
    added[0]["filename"] = "changed.fits"  # a copy: the report is unchanged
    assert added[0]["filename"] == local_db.query_id(added[0]["id"])["filename"]


@pytest.mark.parametrize("protocol", [2], ids=["v2"])
def test_incremental_pull_reads_only_the_new_changes(remote, publisher, local_db, tmp_path):
    publish(publisher, tmp_path / "a", 4)
    pull_records(local_db, remote)
    cursor = int(local_db.get_meta(cursor_key(remote)))
    assert remote.changes(since=cursor)["records"] == []
    new = publish(publisher, tmp_path / "b", 2)
    assert remote.changes(since=cursor)["records"] != []
    assert ids(pull_records(local_db, remote)) == ids(new)
    assert int(local_db.get_meta(cursor_key(remote))) == cursor + 2


def test_changed_record_on_the_archive_is_pulled(remote, publisher, local_db, protocol, tmp_path):
    (record,) = publish(publisher, tmp_path / "a", 1)
    pull_records(local_db, remote)
    publisher.add(dict(record, spectrograph="green"))
    if protocol == 2:
        (changed,) = pull_records(local_db, remote)
        assert changed["spectrograph"] == "green"
    else:
        assert pull_records(local_db, remote) == []  # v1 'id' mode: the id is known
        (changed,) = pull_records(local_db, remote, mode="last_updated")
    assert local_db.query_id(record["id"])["spectrograph"] == "green"


def test_lost_cursor_still_syncs_correctly(remote, publisher, local_db, tmp_path):
    publish(publisher, tmp_path / "a", 4)
    pull_records(local_db, remote)
    local_db.set_meta(cursor_key(remote), None)
    assert pull_records(local_db, remote) == []
    assert len(local_db) == 4
    local_db.delete(local_db.get_column("id")[0])
    local_db.set_meta(cursor_key(remote), None)
    new = publish(publisher, tmp_path / "b", 1)
    assert len(pull_records(local_db, remote)) == 2 and len(local_db) == 5
    assert ids(new) <= set(local_db.get_column("id"))


def test_emptied_database_is_filled_again(remote, publisher, local_db, tmp_path):
    publish(publisher, tmp_path / "a", 3)
    pull_records(local_db, remote)
    for cal_id in local_db.get_column("id"):
        local_db.delete(cal_id)
    assert len(pull_records(local_db, remote)) == 3 and len(local_db) == 3


def test_pull_last_updated_mode(remote, publisher, local_db, tmp_path):
    old = publish(publisher, tmp_path / "a", 3)
    assert ids(pull_records(local_db, remote, mode="last_updated")) == ids(old)
    assert pull_records(local_db, remote, "last_updated") == []
    new = publish(publisher, tmp_path / "b", 2)
    assert ids(pull_records(local_db, remote, mode="last_updated")) == ids(new)


def test_pull_selected_records(remote, publisher, local_db, tmp_path):
    records = publish(publisher, tmp_path / "a", 4)
    added = pull_records(local_db, remote, cals=[records[1]["id"], records[3]])
    assert ids(added) == {records[1]["id"], records[3]["id"]}
    assert set(local_db.get_column("id")) == ids(added)
    with pytest.raises(CalibrationNotFoundError):
        pull_records(
            local_db, remote, cals=[records[0]["id"], "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"]
        )
    assert len(local_db) == 2


def test_missing_records_both_sources_both_modes(remote, publisher, local_db, tmp_path):
    remote_only = publish(publisher, tmp_path / "a", 3)
    local_only = [dict(new_record(i, b"x"), last_updated=utc_now()) for i in range(10, 12)]
    local_db.add(local_only)
    assert ids(missing_records(local_db, remote, "remote", "id")) == ids(remote_only)
    assert ids(missing_records(local_db, remote, "local", "id")) == ids(local_only)
    # The local records are newer than anything on the archive, and vice versa not.
    assert ids(missing_records(local_db, remote, "local", "last_updated")) == ids(local_only)
    assert missing_records(local_db, remote, "remote", "last_updated") == []
    full = missing_records(local_db, remote, "remote")[0]
    assert full["file_md5"] and full["cal_type"]
    with pytest.raises(ValueError, match="source"):
        missing_records(local_db, remote, "elsewhere")
    with pytest.raises(ValueError, match="mode"):
        missing_records(local_db, remote, "remote", "md5")


def test_many_missing_records_are_paged(remote, publisher, local_db, tmp_path):
    publisher.batch_size = 500
    records = [new_record(i, b"x", file_md5=None, file_size=None) for i in range(450)]
    publisher.add(records)
    remote.page_size = 100
    local_db.add(dict(records[0], last_updated=utc_now()))
    missing = missing_records(local_db, remote, "remote", "id")
    assert ids(missing) == ids(records[1:])


def register_locally(local_db, layout, count, size=4000):
    layout.create()
    records = []
    for index in range(count):
        data = os.urandom(size)
        record = dict(new_record(index, data, origin="LOCAL"), last_updated=utc_now())
        layout.path_for(record["filename"]).write_bytes(data)
        records.append(record)
    local_db.add(records)
    return records


def test_push_then_pull_round_trip(shared_archive, instrument, local_db, tmp_path):
    layout = CacheLayout(tmp_path / "cache-a", instrument)
    mine = register_locally(local_db, layout, 4)
    with make_client(shared_archive.url(2), instrument, shared_archive.tokens["write"]) as remote:
        pushed = push_records(local_db, remote, layout)
        assert ids(pushed) == ids(mine)
        assert push_records(local_db, remote, layout) == []
    other_layout = CacheLayout(tmp_path / "cache-b", instrument)
    (tmp_path / "b").mkdir()
    other_db = LocalCalibrationDB(tmp_path / "b" / "cal.db", instrument)
    for protocol in (2, 1):
        token = shared_archive.tokens["read"]
        with make_client(shared_archive.url(protocol), instrument, token) as reader:
            got = pull_records(other_db, reader)
            # The v2 pass brings every record; the v1 pass finds nothing new.
            assert ids(got) == (ids(mine) if protocol == 2 else set())
            paths = prefetch(reader, other_db.query(), other_layout, workers=4, force=True)
        for record in mine:
            copy = other_layout.path_for(record["filename"])
            assert str(copy) in paths
            assert copy.read_bytes() == layout.path_for(record["filename"]).read_bytes()
    other_db.close()


def test_push_needs_every_file_and_v2(shared_archive, instrument, local_db, tmp_path):
    layout = CacheLayout(tmp_path / "cache", instrument)
    records = register_locally(local_db, layout, 2)
    with make_client(shared_archive.url(1), instrument, shared_archive.tokens["write"]) as v1:
        with pytest.raises(ArchiveError, match="protocol 1"):
            push_records(local_db, v1, layout)
    layout.path_for(records[1]["filename"]).unlink()
    with make_client(shared_archive.url(2), instrument, shared_archive.tokens["write"]) as v2:
        with pytest.raises(CalibrationNotFoundError, match=records[1]["filename"]):
            push_records(local_db, v2, layout)
        assert v2.query() == []


def test_cursor_is_per_archive(shared_archive, instrument):
    with (
        make_client(shared_archive.url(2), instrument, None) as a,
        make_client(shared_archive.url(2).replace("127.0.0.1", "localhost"), instrument, None) as b,
        make_client(shared_archive.url(2), "hispec", None) as c,
    ):
        assert len({cursor_key(a), cursor_key(b), cursor_key(c)}) == 3


def test_read_only_token_cannot_push_records(shared_archive, instrument, local_db, tmp_path):
    layout = CacheLayout(tmp_path / "cache", instrument)
    register_locally(local_db, layout, 2)
    with make_client(shared_archive.url(2), instrument, shared_archive.tokens["read"]) as remote:
        with pytest.raises(AuthenticationError, match="403") as info:
            push_records(local_db, remote, layout)
        assert shared_archive.tokens["read"] not in str(info.value)
        assert remote.query() == []

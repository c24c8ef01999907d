"""RemoteCalibrationDB against a real koa-archive, speaking protocol 2 and protocol 1."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess

import pytest

from koa_middleware.cache.layout import CacheLayout
from koa_middleware.client.downloads import fetch_to_cache, prefetch
from koa_middleware.client.sync import pull_records
from koa_middleware.errors import (
    ArchiveError,
    AuthenticationError,
    CalibrationNotFoundError,
    ChecksumMismatchError,
    InvalidRecordError,
)
from koa_middleware.records import utc_now
from support.archive import archive_command, create_token, make_client
from support.published import new_record, publish


def test_protocol_is_detected(remote, protocol, shared_archive):
    assert remote.protocol == protocol
    assert remote.url == shared_archive.url(protocol)
    assert shared_archive.tokens["write"] not in repr(remote)
    if protocol == 2:
        assert remote.healthz()["protocol"] == 2
    else:
        with pytest.raises(ArchiveError, match="404"):
            remote.healthz()


def test_query_filters(remote, publisher, tmp_path):
    records = publish(publisher, tmp_path / "files", 6)
    everything = remote.query()
    assert {r["id"] for r in everything} == {r["id"] for r in records}
    order = [(r["last_updated"], r["id"]) for r in everything]
    assert order == sorted(order)
    assert all(r["last_updated"] for r in everything) and "seq" not in everything[0]
    darks = remote.query(cal_type="dark")
    assert {r["id"] for r in darks} == {r["id"] for r in records if r["cal_type"] == "dark"}
    one = records[3]
    assert remote.query(cal_id=one["id"])["filename"] == one["filename"]
    assert remote.query(filename=one["filename"], fetch="first")["id"] == one["id"]
    window = remote.query(date_time_start="2026-01-02", date_time_end="2026-01-03T00:00:02")
    assert {r["id"] for r in window} == {records[1]["id"], records[2]["id"]}
    assert {r["id"] for r in remote.query(spectrograph="blue")} == {
        r["id"] for r in records if r["spectrograph"] == "blue"
    }
    assert remote.query(cal_version_min="002") == []
    assert len(remote.query(cal_version_max=1)) == 6
    newest = everything[-1]["last_updated"]
    assert remote.query(last_updated_start=newest) == []
    assert len(remote.query(last_updated_end=newest)) == 6
    assert remote.query(cal_type="arc") == []
    assert remote.query(cal_type="arc", fetch="first") == []  # as the reference answers


def test_query_columns_and_pages(remote, publisher, tmp_path):
    records = publish(publisher, tmp_path / "files", 5)
    slim = remote.query(columns="id,last_updated")
    assert [set(r) for r in slim] == [{"id", "last_updated"}] * 5
    page = remote.query(columns=["last_updated"], limit=2, offset=2)
    assert [r["id"] for r in page] == [r["id"] for r in slim[2:4]]
    remote.page_size = 2
    pages = list(remote.iter_query(columns="id"))
    assert [r["id"] for page in pages for r in page] == [r["id"] for r in slim]
    assert {r["id"] for r in slim} == {r["id"] for r in records}


def test_get_last_updated(remote, publisher, tmp_path):
    assert remote.get_last_updated() is None
    before = utc_now()
    publish(publisher, tmp_path / "files", 2)
    newest = remote.get_last_updated()
    assert newest >= before
    assert newest == remote.query()[-1]["last_updated"]


def test_add_is_all_or_nothing(remote, tmp_path):
    good = new_record(0, b"x", file_md5=None, file_size=None)
    bad = dict(new_record(1, b"y", file_md5=None, file_size=None), cal_version="1000")
    with pytest.raises(InvalidRecordError):
        remote.add([good, bad])  # refused before sending
    answer = remote.add([good])
    assert answer == {"added": 1, "ids": [good["id"]]}
    stored = remote.query(cal_id=good["id"])
    assert stored["origin"] == "KECK" and stored["last_updated"]
    remote.batch_size = 2
    many = [new_record(i, b"z", file_md5=None, file_size=None) for i in range(5)]
    assert remote.add(many)["added"] == 5
    assert len(remote.query()) == 6


def test_add_refused_by_the_archive_names_url_and_status(remote):
    records = [new_record(0, b"x", file_md5=None), new_record(1, b"y", file_md5=None)]
    records[1]["filename"] = records[0]["filename"]  # two ids claim one file name
    with pytest.raises(ArchiveError) as info:
        remote.add(records)
    assert info.value.status in (400, 409) and remote.url in str(info.value)
    assert remote.query() == []


def test_download_calibration_file(remote, publisher, tmp_path):
    (record,) = publish(publisher, tmp_path / "files", 1, size=300_000)
    path = remote.download_calibration_file(record["id"], tmp_path / "out")
    assert path == str(tmp_path / "out" / record["filename"])
    assert (tmp_path / "out" / record["filename"]).read_bytes() == (
        tmp_path / "files" / record["filename"]
    ).read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [record["filename"]]
    chosen = tmp_path / "elsewhere" / "renamed.fits"
    assert remote.download_calibration_file(record["id"], tmp_path, chosen) == str(chosen)
    assert hashlib.md5(chosen.read_bytes()).hexdigest() == record["file_md5"]
    with pytest.raises(CalibrationNotFoundError):
        remote.download_calibration_file("1b4e28ba-2fa1-4d2b-883f-0016d3cca427", tmp_path / "o")


def test_fetch_and_prefetch_into_the_cache(remote, publisher, tmp_path):
    records = publish(publisher, tmp_path / "files", 6, size=50_000)
    layout = CacheLayout(tmp_path / "cache", remote.instrument_name)
    first = fetch_to_cache(remote, records[0], layout)
    assert first == layout.path_for(records[0]["filename"])
    ids_and_records = [records[1]["id"], *records[2:], records[0]]
    paths = prefetch(remote, ids_and_records, layout, workers=4)
    assert paths == [str(layout.path_for(r["filename"])) for r in [*records[1:], records[0]]]
    for record in records:
        data = layout.path_for(record["filename"]).read_bytes()
        assert hashlib.md5(data).hexdigest() == record["file_md5"]
    assert not any(layout.tmp_dir.iterdir())
    with pytest.raises(CalibrationNotFoundError):
        prefetch(remote, ["1b4e28ba-2fa1-4d2b-883f-0016d3cca427"], layout)


def test_changes_and_upload_need_v2(remote, protocol, publisher, tmp_path):
    if protocol == 2:
        records = publish(publisher, tmp_path / "files", 3)
        first = remote.changes(since=0, limit=2)
        assert len(first["records"]) == 2 and first["more"] is True
        rest = remote.changes(since=first["next"], limit=2)
        assert len(rest["records"]) == 1
        seen = [r["id"] for r in first["records"] + rest["records"]]
        assert sorted(seen) == sorted(r["id"] for r in records)
        assert rest["more"] is False
        assert remote.changes(since=rest["next"]) == {
            "records": [],
            "next": rest["next"],
            "more": False,
        }
        return
    (tmp_path / "f").write_bytes(b"data")
    with pytest.raises(ArchiveError, match="protocol 1"):
        remote.changes()
    with pytest.raises(ArchiveError, match="protocol 1"):
        remote.upload_calibration_file("1b4e28ba-2fa1-4d2b-883f-0016d3cca427", tmp_path / "f")


def test_upload_answers(publisher, tmp_path):
    path = tmp_path / "a.fits"
    path.write_bytes(b"first bytes")
    cal_id = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"
    assert publisher.upload_calibration_file(cal_id, path) == 201
    assert publisher.upload_calibration_file(cal_id, path) == 200
    other = tmp_path / "b.fits"
    other.write_bytes(b"other bytes")
    with pytest.raises(ArchiveError, match="409"):
        publisher.upload_calibration_file(cal_id, other)
    with pytest.raises(ChecksumMismatchError):
        publisher.upload_calibration_file(cal_id, other, md5="0" * 32)


# -- credentials ------------------------------------------------------------------


def test_wrong_token_is_401(shared_archive, protocol, instrument):
    with make_client(shared_archive.url(protocol), instrument, "not-a-token") as remote:
        with pytest.raises(AuthenticationError) as info:
            remote.query()
    assert info.value.status == 401
    assert "bearer token from the token argument" in str(info.value)
    assert "not-a-token" not in str(info.value)


def test_no_token_is_401_naming_anonymous(shared_archive, protocol, instrument):
    with make_client(shared_archive.url(protocol), instrument, None) as remote:
        with pytest.raises(AuthenticationError, match="no credentials"):
            remote.get_last_updated()


def test_revoked_token_is_401(shared_archive, protocol, instrument, monkeypatch):
    name = f"revoke-me-{instrument}-{protocol}"
    token = create_token(shared_archive.root, "read", name=name)
    monkeypatch.setenv("KOA_API_TOKEN", token)
    with make_client(shared_archive.url(protocol), instrument, None) as remote:
        assert remote.query() == []
        revoke = archive_command("token", "revoke", "--root", str(shared_archive.root), name)
        subprocess.run(revoke, check=True, capture_output=True, timeout=60)
        with pytest.raises(AuthenticationError, match="KOA_API_TOKEN") as info:
            remote.query()
    assert info.value.status == 401 and token not in str(info.value)


def test_read_only_token_cannot_push(shared_archive, protocol, instrument, tmp_path):
    with make_client(shared_archive.url(protocol), instrument, shared_archive.tokens["read"]) as r:
        with pytest.raises(AuthenticationError, match="403") as info:
            r.add(new_record(0, b"x"))
        assert info.value.status == 403
        if protocol == 2:
            (tmp_path / "f").write_bytes(b"x")
            with pytest.raises(AuthenticationError, match="403"):
                r.upload_calibration_file("1b4e28ba-2fa1-4d2b-883f-0016d3cca427", tmp_path / "f")


# -- hostile archive content ---------------------------------------------------------


@pytest.mark.parametrize(
    "column, value",
    [("filename", "../../../outside.fits"), ("filename", "a/b.fits")],
)
def test_traversal_file_name_in_the_catalog_is_refused(
    remote, publisher, local_db, tmp_path, shared_archive, column, value
):
    (record,) = publish(publisher, tmp_path / "files", 1)
    with sqlite3.connect(shared_archive.root / "archive.db") as catalog:
        catalog.execute(
            f"UPDATE records SET {column} = ? WHERE id = ?",  # noqa: S608 - fixed names
            (value, record["id"]),
        )
    with pytest.raises(InvalidRecordError, match="sent an invalid record"):
        remote.query()
    with pytest.raises(InvalidRecordError):
        pull_records(local_db, remote)
    assert len(local_db) == 0
    layout = CacheLayout(tmp_path / "cache", remote.instrument_name)
    with pytest.raises(InvalidRecordError):
        fetch_to_cache(remote, dict(record, filename=value), layout)
    assert not (tmp_path / "outside.fits").exists()


def test_bad_column_name_in_the_catalog_is_refused(
    remote, publisher, local_db, tmp_path, shared_archive
):
    (record,) = publish(publisher, tmp_path / "files", 1)
    with sqlite3.connect(shared_archive.root / "archive.db") as catalog:
        catalog.execute(
            "UPDATE records SET extra = ? WHERE id = ?",
            ('{"x\\"; DROP TABLE t; --": 1}', record["id"]),
        )
    with pytest.raises(InvalidRecordError, match="column name"):
        remote.query()
    with pytest.raises(InvalidRecordError):
        pull_records(local_db, remote)
    assert len(local_db) == 0


def test_corrupt_file_on_the_archive(remote, publisher, tmp_path, shared_archive):
    (record,) = publish(publisher, tmp_path / "files", 1, size=10_000)
    stored = shared_archive.root / "files" / remote.instrument_name / record["id"]
    data = bytearray(stored.read_bytes())
    data[5000] ^= 0x01
    stored.write_bytes(bytes(data))
    layout = CacheLayout(tmp_path / "cache", remote.instrument_name)
    with pytest.raises(ChecksumMismatchError, match="MD5"):
        fetch_to_cache(remote, record, layout)
    assert not layout.path_for(record["filename"]).exists()
    assert not any(layout.tmp_dir.iterdir())
    with pytest.raises(ChecksumMismatchError):
        remote.download_calibration_file(record["id"], tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

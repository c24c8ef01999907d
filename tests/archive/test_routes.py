"""Every route of PROTOCOL.md through real HTTP, in both protocol modes, on both databases."""

from __future__ import annotations

import io
import zipfile

import pytest

from koa_middleware.archive.transfer import SMALL_FILE
from support.archive import make_record, md5_hex, publish, upload

NO_MATCH = {"message": "No matching calibrations found."}


@pytest.mark.parametrize("protocol", [1, 2])
def test_v1_query_add_last_updated_download(start_archive, protocol):
    archive = start_archive(protocol=protocol)
    client = archive.client("write")
    assert client.get("hispec/lastUpdated").json() == {"last_updated": None}
    assert client.get("hispec/query").json() == NO_MATCH

    dark = make_record(
        cal_type="dark",
        datetime_obs="2024-01-01T01:00:00",
        spectrograph="red",
        mjd=60310.5,
        master_cal=True,
        exptime=30,
        cal_version="1",
    )
    flat = make_record(
        cal_type="flat",
        datetime_obs="Tue, 02 Jan 2024 00:00:00 GMT",
        origin="local",
        spectrograph="blue",
        mjd=60311.0,
        master_cal=False,
        cal_version="002",
    )
    response = client.post("hispec/add", json=[dark, flat])
    assert response.status_code == 200
    assert response.json() == {"added": 2, "ids": [dark["id"], flat["id"]]}

    records = client.get("hispec/query").json()
    # One batch, one last_updated: ordered by id.
    assert [r["id"] for r in records] == sorted([dark["id"], flat["id"]])
    by_id = {r["id"]: r for r in records}
    stored_dark, stored_flat = by_id[dark["id"]], by_id[flat["id"]]
    assert stored_dark["datetime_obs"] == "2024-01-01T01:00:00.000"
    assert stored_dark["cal_version"] == "001" and stored_dark["master_cal"] == 1
    assert stored_flat["datetime_obs"] == "2024-01-02T00:00:00.000"
    assert stored_flat["origin"] == "LOCAL"
    assert stored_dark["last_updated"] <= stored_flat["last_updated"]
    assert ("seq" in stored_dark) is (protocol == 2)
    assert client.get("liger/query").json() == NO_MATCH  # instruments are separate

    def ids(**params):
        answer = client.get("hispec/query", params=params).json()
        if answer == NO_MATCH:
            return []
        return [r["id"] for r in (answer if isinstance(answer, list) else [answer])]

    assert ids(cal_type="flat") == [flat["id"]]
    assert ids(filename=dark["filename"]) == [dark["id"]]
    assert ids(origin="local") == [flat["id"]]
    assert ids(date_time_start="2024-01-01T12:00:00") == [flat["id"]]
    assert ids(date_time_end="2024-01-01T01:00:00.000") == [dark["id"]]  # inclusive
    assert ids(cal_version_min="002") == [flat["id"]]
    assert ids(cal_version_max="001") == [dark["id"]]
    assert ids(last_updated_start=stored_flat["last_updated"]) == []  # strictly after
    assert len(ids(last_updated_end=stored_dark["last_updated"])) == 2  # inclusive
    assert ids(spectrograph="blue") == [flat["id"]]  # any column: equality
    assert ids(mjd="60310.5") == [dark["id"]]
    assert ids(mjd="60311") == [flat["id"]]  # numbers compare as numbers
    assert ids(exptime="30") == [dark["id"]]
    assert ids(master_cal="true") == [dark["id"]]
    assert ids(master_cal="0") == [flat["id"]]
    assert ids(cal_type="flat", spectrograph="red") == []  # AND
    assert ids(spectrograph="green") == []

    single = client.get("hispec/query", params={"cal_id": flat["id"]}).json()
    assert isinstance(single, dict) and single["id"] == flat["id"]
    first = client.get("hispec/query", params={"fetch": "first"}).json()
    assert isinstance(first, dict) and first["id"] == records[0]["id"]

    newest = client.get("hispec/lastUpdated").json()["last_updated"]
    assert newest == max(r["last_updated"] for r in records)

    # Upsert by id replaces the record and moves last_updated.
    changed = dict(dark, spectrograph="green", exptime=60)
    assert client.post("hispec/add", json=changed).json()["added"] == 1
    again = client.get("hispec/query", params={"cal_id": dark["id"]}).json()
    assert again["spectrograph"] == "green" and again["exptime"] == 60
    assert again["last_updated"] >= newest
    assert len(client.get("hispec/query").json()) == 2

    # download: a zip with exactly one member, the file under the record's filename.
    data = bytes(range(256)) * 100
    record = make_record(
        file_md5=md5_hex(data), file_size=len(data), filename="dark_7.dat", spectrograph="yJ"
    )
    if protocol == 2:
        assert upload(client, record["id"], data).status_code == 201
    else:  # v1 has no upload route: publish the file the way an operator does.
        assert client.put(f"hispec/files/{record['id']}", content=data).status_code == 404
        _place_by_ingest(archive, record, data)
    client.post("hispec/add", json=record)
    response = client.get("hispec/download", params={"cal_id": record["id"]})
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as zipped:
        assert zipped.namelist() == [record["filename"]]
        assert zipped.read(record["filename"]) == data
    missing = client.get("hispec/download", params={"cal_id": flat["id"]})  # no file stored
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def _place_by_ingest(archive, record, data):
    """Store a file for ``record`` with ``koa-archive ingest`` (a JSON sidecar)."""
    import json
    import subprocess

    from support.archive import archive_command

    folder = archive.root.parent / "incoming"
    folder.mkdir(exist_ok=True)
    path = folder / record["filename"]
    path.write_bytes(data)
    path.with_name(path.name + ".json").write_text(json.dumps(record))
    db = ["--db", archive.server.db_url] if archive.server.db_url else []
    argv = ["ingest", "--root", str(archive.root), *db, "--instrument", "hispec", str(path)]
    result = subprocess.run(archive_command(*argv), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_v1_mode_offers_no_v2_routes(start_archive):
    archive = start_archive(protocol=1)
    client = archive.client("write")
    record = make_record()
    client.post("hispec/add", json=record)
    for path in ("healthz", "hispec/changes", f"hispec/files/{record['id']}"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    # v2 query parameters are plain column filters on a v1 server, as on the Keck service.
    assert client.get("hispec/query", params={"columns": "id"}).json() == NO_MATCH
    assert "seq" not in client.get("hispec/query", params={"cal_id": record["id"]}).json()


def test_healthz_and_changes(archive, iter_changes):
    client = archive.client("read")
    health = client.get("healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "protocol": 2, "version": health.json()["version"]}
    assert client.get("hispec/changes").json() == {"records": [], "next": 0, "more": False}

    writer = archive.client("write")
    batch = [make_record(cal_type=f"t{i}") for i in range(7)]
    writer.post("hispec/add", json=batch)
    page = client.get("hispec/changes", params={"since": 0, "limit": 3}).json()
    assert [r["seq"] for r in page["records"]] == [1, 2, 3]
    assert page["next"] == 3 and page["more"] is True
    followed = list(iter_changes(client, "hispec", limit=3))
    assert [r["seq"] for r in followed] == list(range(1, 8))
    assert [r["id"] for r in followed] == [r["id"] for r in batch]

    # A change moves the record to the end of the feed; an identical re-add changes nothing.
    writer.post("hispec/add", json=dict(batch[2], spectrograph="x"))
    writer.post("hispec/add", json=batch[3])
    tail = client.get("hispec/changes", params={"since": 7}).json()
    assert [(r["id"], r["seq"]) for r in tail["records"]] == [(batch[2]["id"], 8)]
    assert tail == {"records": tail["records"], "next": 8, "more": False}
    assert client.get("hispec/changes", params={"since": 8}).json()["next"] == 8
    assert [r["seq"] for r in iter_changes(client, "hispec")] == [1, 2, 4, 5, 6, 7, 8]


def test_query_columns_limit_offset(archive):
    writer = archive.client("write")
    batch = [make_record(spectrograph="red") for _ in range(5)]
    writer.post("hispec/add", json=batch)
    client = archive.client("read")
    slim = client.get("hispec/query", params={"columns": "id,last_updated"}).json()
    assert [sorted(r) for r in slim] == [["id", "last_updated"]] * 5
    everything = [r["id"] for r in client.get("hispec/query").json()]
    page = client.get("hispec/query", params={"limit": 2, "offset": 2, "columns": "id"}).json()
    assert [r["id"] for r in page] == everything[2:4]
    filtered = client.get("hispec/query", params={"spectrograph": "red", "limit": 1}).json()
    assert len(filtered) == 1


@pytest.mark.parametrize(
    "size",
    [(1 << 20) + 4, SMALL_FILE + (3 << 20) + 4],
    ids=["answered-whole", "streamed-in-blocks"],
)
def test_file_upload_and_download(archive, size):
    client = archive.client("write")
    data = (bytes(range(256)) * (size // 256 + 1))[: size - 4] + b"tail"
    record = make_record(file_md5=md5_hex(data), file_size=len(data))
    first = upload(client, record["id"], data)
    assert first.status_code == 201
    assert first.json() == {
        "id": record["id"],
        "file_md5": md5_hex(data),
        "file_size": len(data),
        "stored": True,
    }
    assert upload(client, record["id"], data).status_code == 200  # same bytes again
    other = upload(client, record["id"], data + b"!")
    assert other.status_code == 409 and other.json()["error"] == "conflict"
    assert client.post("hispec/add", json=record).status_code == 200

    reader = archive.client("read")
    whole = reader.get(f"hispec/files/{record['id']}")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-length"] == str(len(data))
    assert whole.headers["etag"] == f'"{md5_hex(data)}"'
    assert whole.headers["accept-ranges"] == "bytes"
    tail = reader.get(f"hispec/files/{record['id']}", headers={"Range": "bytes=1000-"})
    assert tail.status_code == 206 and tail.content == data[1000:]
    assert tail.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    middle = reader.get(f"hispec/files/{record['id']}", headers={"Range": "bytes=10-19"})
    assert middle.status_code == 206 and middle.content == data[10:20]
    past = reader.get(f"hispec/files/{record['id']}", headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416 and past.json()["error"] == "range_not_satisfiable"
    missing = reader.get("hispec/files/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    # Files are per instrument.
    assert reader.get(f"liger/files/{record['id']}").status_code == 404
    empty = make_record()
    assert upload(client, empty["id"], b"").status_code == 201
    assert reader.get(f"hispec/files/{empty['id']}").content == b""


def test_anonymous_read(start_archive):
    archive = start_archive(anonymous_read=True)
    record = publish(archive.client("write"), b"open data")
    anonymous = archive.client(None)
    assert (
        anonymous.get("hispec/query", params={"cal_id": record["id"]}).json()["id"] == record["id"]
    )
    assert anonymous.get(f"hispec/files/{record['id']}").content == b"open data"
    assert anonymous.get("hispec/changes").status_code == 200
    refused = anonymous.post("hispec/add", json=make_record())
    assert refused.status_code == 401
    assert archive.client(token="koa_wrong").get("hispec/query").status_code == 401


def test_openapi_describes_every_route(archive):
    import httpx

    schema = httpx.get(archive.base.rsplit("/api/", 1)[0] + "/openapi.json").json()
    paths = schema["paths"]
    prefix = "/api/calibrations"
    expected = {
        f"{prefix}/healthz": {"get"},
        f"{prefix}/{{instrument}}/query": {"get"},
        f"{prefix}/{{instrument}}/lastUpdated": {"get"},
        f"{prefix}/{{instrument}}/add": {"post"},
        f"{prefix}/{{instrument}}/download": {"get"},
        f"{prefix}/{{instrument}}/changes": {"get"},
        f"{prefix}/{{instrument}}/retract": {"post"},
        f"{prefix}/{{instrument}}/unretract": {"post"},
        f"{prefix}/{{instrument}}/files/{{cal_id}}": {"get", "put"},
    }
    assert {path: set(ops) for path, ops in paths.items()} == expected
    components = schema["components"]["schemas"]
    assert {"Record", "RecordIn", "ErrorBody", "ChangesPage"} <= set(components)
    assert set(components["ErrorBody"]["required"]) == {"error", "message"}
    assert "HTTPValidationError" not in components

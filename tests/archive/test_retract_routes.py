"""Retract and unretract on a real koa-archive (SQLite and PostgreSQL catalogs).

A retraction keeps the record and its file, gives the record a time, a reason
and a new place in the changes feed, and takes it out of default queries.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from support.archive import ArchiveServer, publish
from support.retract_archive import (
    LIFECYCLE,
    NO_MATCH,
    feed_since,
    ids_of,
    newest_seq,
    retract,
    unretract,
)


def lifecycle(record: dict) -> dict:
    return {name: record[name] for name in LIFECYCLE}


def test_a_retraction_reaches_the_feed_and_leaves_default_queries(archive):
    writer, reader = archive.client("write"), archive.client("read")
    a = publish(writer, b"dark a", cal_type="dark")
    b = publish(writer, b"dark b", cal_type="dark")
    # Default query: live records in their usual shape, without the lifecycle fields.
    listed = reader.get("hispec/query").json()
    assert sorted(ids_of(listed)) == sorted([a["id"], b["id"]])
    assert not any(name in record for record in listed for name in LIFECYCLE)
    full = reader.get("hispec/query", params={"cal_id": a["id"], "include_retracted": 1}).json()
    assert full["published_at"] == full["last_updated"]
    assert full["retracted_at"] is None and full["retract_reason"] is None
    before = newest_seq(reader)
    fed = feed_since(reader, 0)["records"]
    assert all(set(LIFECYCLE) <= set(record) for record in fed)

    answer = retract(writer, [a["id"], a["id"].upper()], "  hot \n\t pixels  ")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"retracted": [a["id"]]}

    # The changes feed delivers the change: a new seq, a new last_updated, the fields.
    page = feed_since(reader, before)
    assert [r["id"] for r in page["records"]] == [a["id"]]
    changed = page["records"][0]
    assert changed["seq"] == before + 1
    assert changed["last_updated"] >= full["last_updated"]
    assert changed["retracted_at"] == changed["last_updated"]
    assert changed["retract_reason"] == "hot pixels"
    assert changed["published_at"] == full["published_at"]  # never changes

    # Default queries no longer see it, by any filter; include_retracted does.
    assert ids_of(reader.get("hispec/query").json()) == [b["id"]]
    assert reader.get("hispec/query", params={"cal_id": a["id"]}).json() == NO_MATCH
    assert reader.get("hispec/query", params={"filename": a["filename"]}).json() == NO_MATCH
    shown = reader.get("hispec/query", params={"cal_id": a["id"], "include_retracted": "1"})
    assert lifecycle(shown.json()) == lifecycle(changed)
    everything = reader.get(
        "hispec/query", params={"include_retracted": "true", "columns": "id,retracted_at"}
    ).json()
    assert {r["id"]: r["retracted_at"] for r in everything} == {
        a["id"]: changed["retracted_at"],
        b["id"]: None,
    }
    # A client following last_updated sees it (asking for retracted records too).
    newer = reader.get(
        "hispec/query",
        params={"last_updated_start": full["last_updated"], "include_retracted": 1},
    ).json()
    if changed["last_updated"] > full["last_updated"]:
        assert a["id"] in ids_of(newer)
    assert reader.get("hispec/lastUpdated").json()["last_updated"] == changed["last_updated"]

    # Its file stays: both downloads still work.
    assert reader.get(f"hispec/files/{a['id']}").content == b"dark a"
    assert reader.get("hispec/download", params={"cal_id": a["id"]}).status_code == 200

    # Retracting again updates the time and the reason.
    assert retract(writer, [a["id"]], "worse: cracked").status_code == 200
    again = feed_since(reader, changed["seq"])["records"]
    assert [r["id"] for r in again] == [a["id"]]
    assert again[0]["retract_reason"] == "worse: cracked"
    assert again[0]["retracted_at"] >= changed["retracted_at"]

    # Unretract clears both fields, again with a new seq.
    answer = unretract(writer, [a["id"]])
    assert answer.status_code == 200 and answer.json() == {"unretracted": [a["id"]]}
    live = feed_since(reader, again[0]["seq"])["records"]
    assert [r["id"] for r in live] == [a["id"]]
    assert live[0]["retracted_at"] is None and live[0]["retract_reason"] is None
    assert live[0]["published_at"] == full["published_at"]
    back = reader.get("hispec/query", params={"cal_id": a["id"]}).json()
    assert back["id"] == a["id"] and not set(LIFECYCLE) & set(back)


def test_add_never_takes_the_lifecycle_fields_from_a_client(archive):
    writer, reader = archive.client("write"), archive.client("read")
    sent = publish(
        writer,
        b"flat",
        cal_type="flat",
        published_at="2000-01-01T00:00:00.000",
        retracted_at="2000-01-02T00:00:00.000",
        retract_reason="says the client",
    )
    stored = reader.get("hispec/query", params={"cal_id": sent["id"], "include_retracted": 1})
    record = stored.json()
    assert record["published_at"] == record["last_updated"]
    assert record["retracted_at"] is None and record["retract_reason"] is None
    # An update keeps the publication time, and the retraction of a retracted record.
    assert retract(writer, [sent["id"]], "bad").status_code == 200
    changed = {k: v for k, v in sent.items() if k not in LIFECYCLE}
    changed["exptime"] = 30
    changed["retracted_at"] = None
    assert writer.post("hispec/add", json=changed).status_code == 200
    after = reader.get("hispec/query", params={"cal_id": sent["id"], "include_retracted": 1}).json()
    assert after["exptime"] == 30
    assert after["published_at"] == record["published_at"]
    assert after["retract_reason"] == "bad" and after["retracted_at"] is not None
    assert reader.get("hispec/query", params={"cal_id": sent["id"]}).json() == NO_MATCH


def test_retract_needs_the_write_scope(archive):
    record = publish(archive.client("write"), b"x")
    for client, status in ((archive.client(None), 401), (archive.client("read"), 403)):
        assert retract(client, [record["id"]], "bad").status_code == status
        assert unretract(client, [record["id"]]).status_code == status
    assert retract(archive.client("admin"), [record["id"]], "bad").status_code == 200


def _bad_bodies(known: str) -> list[tuple[str, object, int, str]]:
    too_many = [str(uuid.uuid4()) for _ in range(10_001)]
    return [
        ("retract", b"not json", 400, "not JSON"),
        ("retract", [known], 400, "JSON object"),
        ("retract", {"ids": [known]}, 400, "reason"),
        ("retract", {"ids": [known], "reason": " \n "}, 400, "reason"),
        ("retract", {"ids": [known], "reason": 7}, 400, "reason"),
        ("retract", {"ids": [known], "reason": "x" * 2001}, 400, "2,000"),
        ("retract", {"ids": [known], "reason": "a\x00b"}, 400, "NUL"),
        ("retract", {"ids": known, "reason": "bad"}, 400, "list"),
        ("retract", {"ids": [], "reason": "bad"}, 400, "non-empty"),
        ("retract", {"ids": [known, "nope"], "reason": "bad"}, 400, "ids[1]"),
        ("retract", {"ids": [known, 5], "reason": "bad"}, 400, "ids[1]"),
        ("retract", {"ids": [known], "reason": "bad", "why": 1}, 400, "'why'"),
        ("retract", {"ids": too_many, "reason": "bad"}, 413, "at most 10000"),
        ("unretract", {"ids": [known], "reason": "bad"}, 400, "'reason'"),
        ("unretract", {}, 400, "non-empty"),
        ("retract", {"ids": [known], "reason": "x" * (2 << 20)}, 413, "bytes"),
    ]


def test_bad_bodies_and_unknown_ids_change_nothing(archive, snapshot):
    writer = archive.client("write")
    known = publish(writer, b"kept")["id"]
    other = publish(writer, b"also kept")["id"]
    before = snapshot(archive)
    for route, body, status, words in _bad_bodies(known):
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = writer.post(f"hispec/{route}", content=content)
        assert answer.status_code == status, (route, words, answer.text)
        assert words in answer.json()["message"], (words, answer.json())
    missing = [str(uuid.uuid4()) for _ in range(7)]
    for route in ("retract", "unretract"):
        body = {"ids": [known, *missing, other]}
        if route == "retract":
            body["reason"] = "bad"
        answer = writer.post(f"hispec/{route}", json=body)
        assert answer.status_code == 404, answer.text
        problem = answer.json()
        assert problem["error"] == "not_found" and problem["missing_count"] == 7
        assert problem["missing"] == missing[:5]
        assert missing[0] in problem["message"] and "2 more" in problem["message"]
        assert "Nothing was changed" in problem["message"]
    # An id of another instrument is unknown here.
    assert retract(writer, [known], "bad", inst="liger").status_code == 404
    assert retract(writer, [known], "bad", inst="nosuch").status_code == 404
    assert snapshot(archive) == before


def test_a_v1_server_hides_retracted_records_and_has_no_retract_route(archive):
    writer = archive.client("write")
    a = publish(writer, b"a")
    b = publish(writer, b"b")
    assert retract(writer, [a["id"]], "bad").status_code == 200
    with ArchiveServer(archive.root, db_url=archive.server.db_url, protocol=1) as v1:
        headers = {"Authorization": f"Bearer {archive.tokens['write']}"}
        with httpx.Client(base_url=v1.base_url + "/", headers=headers, timeout=60) as old:
            listed = old.get("hispec/query").json()
            assert ids_of(listed) == [b["id"]]
            assert "seq" not in listed[0] and not set(LIFECYCLE) & set(listed[0])
            assert old.get("hispec/query", params={"cal_id": a["id"]}).json() == NO_MATCH
            # include_retracted is no v1 parameter: an equality filter on a column none has.
            asked = old.get("hispec/query", params={"cal_id": a["id"], "include_retracted": 1})
            assert asked.json() == NO_MATCH
            assert old.get("hispec/download", params={"cal_id": a["id"]}).status_code == 200
            assert retract(old, [b["id"]], "bad").status_code == 404
            assert unretract(old, [a["id"]]).status_code == 404
            paths = httpx.get(v1.base_url.rsplit("/api/", 1)[0] + "/openapi.json").json()["paths"]
            assert not any(p.endswith(("/retract", "/unretract")) for p in paths)


def test_openapi_lists_retract_unretract_and_include_retracted(archive):
    schema = httpx.get(archive.base.rsplit("/api/", 1)[0] + "/openapi.json").json()
    prefix = "/api/calibrations/{instrument}"
    assert set(schema["paths"][f"{prefix}/retract"]) == {"post"}
    assert set(schema["paths"][f"{prefix}/unretract"]) == {"post"}
    body = schema["paths"][f"{prefix}/retract"]["post"]["requestBody"]
    assert set(body["content"]["application/json"]["schema"]["required"]) == {"ids", "reason"}
    query = schema["paths"][f"{prefix}/query"]["get"]["parameters"]
    assert "include_retracted" in {p["name"] for p in query}


@pytest.mark.parametrize("flag", ["maybe", "2"])
def test_include_retracted_takes_a_yes_or_no(archive, flag):
    answer = archive.client("read").get("hispec/query", params={"include_retracted": flag})
    assert answer.status_code == 400 and "include_retracted" in answer.json()["message"]

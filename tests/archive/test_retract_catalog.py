"""Retraction in the catalog: ``koa-archive retract``/``unretract``, older catalogs upgraded
at start-up, and retractions serialized with adds (one seq each, no gaps)."""

from __future__ import annotations

import threading
import uuid

import httpx

from support.archive import ArchiveServer, create_token, make_record, publish
from support.retract_archive import (
    LIFECYCLE,
    NO_MATCH,
    archive_cli,
    feed_since,
    ids_of,
    make_old_catalog,
    newest_seq,
    retract,
)


def test_retract_and_unretract_from_the_command_line(archive):
    writer, reader = archive.client("write"), archive.client("read")
    a, b = publish(writer, b"a"), publish(writer, b"b")
    before = newest_seq(reader)
    root, db = archive.root, archive.server.db_url

    done = archive_cli(
        root, db, "retract", "--instrument", "HISPEC", "--reason", "hot\n pixels", a["id"], b["id"]
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("\t")[:3] for line in lines[:2]] == [
        ["retracted", a["id"], a["filename"]],
        ["retracted", b["id"], b["filename"]],
    ]
    assert lines[2] == "reason: hot pixels"
    # The running server and its followers see it at once.
    page = feed_since(reader, before)["records"]
    assert [r["id"] for r in page] == [a["id"], b["id"]]
    assert {r["retract_reason"] for r in page} == {"hot pixels"}
    assert reader.get("hispec/query").json() == NO_MATCH

    unknown = str(uuid.uuid4())
    refused = archive_cli(root, db, "unretract", "--instrument", "hispec", a["id"], unknown)
    assert refused.returncode == 1
    assert unknown in refused.stderr and "Nothing was changed" in refused.stderr
    assert newest_seq(reader) == before + 2
    for args in (["--reason", "bad", "not-an-id"], ["--reason", "  ", a["id"]]):
        bad = archive_cli(root, db, "retract", "--instrument", "hispec", *args)
        assert bad.returncode == 2 and "Error" in bad.stderr
    elsewhere = archive_cli(root, db, "retract", "--instrument", "nosuch", "--reason", "x", a["id"])
    assert elsewhere.returncode == 1 and "nosuch" in elsewhere.stderr

    done = archive_cli(root, db, "unretract", "--instrument", "hispec", a["id"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\t")[:2] == ["unretracted", a["id"]]
    assert ids_of(reader.get("hispec/query").json()) == [a["id"]]


def test_an_older_catalog_gets_the_lifecycle_columns_at_start_up(tmp_path, catalog_url):
    root = tmp_path / "archive"
    token = create_token(root, "write", db_url=catalog_url)
    headers = {"Authorization": f"Bearer {token}"}

    with ArchiveServer(root, db_url=catalog_url) as server:
        with httpx.Client(base_url=server.base_url + "/", headers=headers) as client:
            old = publish(client, b"from before")
            stamp = client.get("hispec/lastUpdated").json()["last_updated"]
    make_old_catalog(root, catalog_url)
    # A v2 and a v1 server start on the old catalog: the first upgrades it.
    with (
        ArchiveServer(root, db_url=catalog_url) as server,
        ArchiveServer(root, db_url=catalog_url, protocol=1) as v1,
    ):
        with httpx.Client(base_url=server.base_url + "/", headers=headers) as client:
            record = client.get(
                "hispec/query", params={"cal_id": old["id"], "include_retracted": 1}
            ).json()
            assert record["published_at"] == stamp == record["last_updated"]
            assert record["retracted_at"] is None and record["retract_reason"] is None
            new = publish(client, b"after the upgrade")
            assert retract(client, [old["id"]], "bad").status_code == 200
            fed = feed_since(client, 0)["records"]
            assert [r["id"] for r in fed] == [new["id"], old["id"]]
            assert fed[1]["retract_reason"] == "bad" and fed[1]["published_at"] == stamp
            assert fed[0]["published_at"] == fed[0]["last_updated"]
        with httpx.Client(base_url=v1.base_url + "/", headers=headers) as client:
            assert ids_of(client.get("hispec/query").json()) == [new["id"]]
    # Started again, the upgraded catalog is left as it is.
    with ArchiveServer(root, db_url=catalog_url) as server:
        with httpx.Client(base_url=server.base_url + "/", headers=headers) as client:
            fed = feed_since(client, 0)["records"]
            assert {r["id"]: r["retract_reason"] for r in fed} == {
                new["id"]: None,
                old["id"]: "bad",
            }


def test_retractions_and_adds_share_one_seq_counter(archive):
    writer = archive.client("write")
    records = [publish(writer, f"file {i}".encode()) for i in range(6)]
    errors: list[str] = []

    def adding() -> None:
        for _ in range(15):
            answer = writer.post("hispec/add", json=make_record())
            if answer.status_code != 200:
                errors.append(answer.text)

    def retracting() -> None:
        for round_ in range(15):
            ids = [r["id"] for r in records[round_ % 3 :: 2]]
            answer = retract(writer, ids, f"round {round_}")
            if answer.status_code != 200:
                errors.append(answer.text)

    threads = [threading.Thread(target=f) for f in (adding, adding, retracting, retracting)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    fed = feed_since(archive.client("read"), 0)["records"]
    seqs = [r["seq"] for r in fed]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert len(fed) == 6 + 30  # every record once, at its latest seq
    assert all(set(LIFECYCLE) <= set(r) for r in fed)
    last = newest_seq(archive.client("read"))
    # 6 + 30 adds, 30 retractions of 2 or 3 records each: every one took a seq.
    changes = 6 + 30 + sum(len(records[round_ % 3 :: 2]) for round_ in range(15)) * 2
    assert last == changes

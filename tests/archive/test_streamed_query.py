"""``GET INST/query`` streamed: batches read from the catalog and sent as they are read.

Real servers on SQLite and PostgreSQL, with ``--query-batch`` made small so a few
thousand records take many batches.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from support.archive import make_record

NO_MATCH = {"message": "No matching calibrations found."}
BATCH = 50
#: A record of about 100 kB: 200 of them (20 MB) cannot all wait in socket buffers.
BIG_TEXT = "x" * 100_000
BIG_COUNT = 200


def add(client: httpx.Client, batch: list[dict], inst: str = "hispec") -> None:
    for start in range(0, len(batch), 1000):
        response = client.post(f"{inst}/add", json=batch[start : start + 1000])
        assert response.status_code == 200, response.text


def many_records(count: int) -> list[dict]:
    """Records with text, unicode, numbers and booleans among their instrument columns."""
    return [
        make_record(
            cal_type=("dark", "flat", "arc")[i % 3],
            datetime_obs=f"2024-01-{1 + i % 28:02d}T00:00:00.000",
            note=f'räd {i} \u2603 "quoted" \\ back',
            exptime=i / 7,
            count=i,
            good=bool(i % 2),
            empty=None,
        )
        for i in range(count)
    ]


def order_key(record: dict) -> tuple[str, str]:
    return record["last_updated"], record["id"]


def snug_client(archive, scope: str = "read") -> httpx.Client:
    """A client with a small receive buffer, so the server cannot send far ahead of it."""
    transport = httpx.HTTPTransport(
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)]
    )
    return httpx.Client(
        base_url=archive.base + "/",
        headers={"Authorization": f"Bearer {archive.tokens[scope]}"},
        transport=transport,
        timeout=60,
    )


@pytest.mark.parametrize("protocol", [1, 2])
def test_streamed_answer_is_every_record_in_order(start_archive, protocol):
    archive = start_archive(protocol=protocol, extra_args=("--query-batch", str(BATCH)))
    client = archive.client("write")
    sent = many_records(3000)
    add(client, sent)

    with client.stream("GET", "hispec/query") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        body = response.read()
    found = json.loads(body)
    # The same bytes JSONResponse writes for the whole list.
    assert body == json.dumps(
        found, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode("utf-8")
    assert len(found) == len(sent)
    assert found == sorted(found, key=order_key)
    assert {r["id"] for r in found} == {r["id"] for r in sent}
    if protocol == 2:
        feed = client.get("hispec/changes", params={"limit": 10000}).json()["records"]
        lifecycle = ("published_at", "retracted_at", "retract_reason")
        # The feed's records also carry their lifecycle; the query's keep the v1 shape.
        bare = [{k: v for k, v in r.items() if k not in lifecycle} for r in feed]
        assert found == sorted(bare, key=order_key)
    by_id = {r["id"]: r for r in found}
    for record in sent[::997]:
        single = client.get("hispec/query", params={"cal_id": record["id"]}).json()
        assert by_id[record["id"]] == single
        assert single["note"] == record["note"] and single["good"] == record["good"]
        assert single["exptime"] == record["exptime"] and single["empty"] is None


def test_empty_answers(start_archive):
    archive = start_archive(extra_args=("--query-batch", str(BATCH)))
    client = archive.client("write")
    answer = client.get("hispec/query")
    assert answer.status_code == 200 and answer.json() == NO_MATCH
    add(client, many_records(120))
    for params in (
        {"cal_type": "bias"},
        {"limit": 0},
        {"offset": 120},
        {"fetch": "first", "cal_type": "bias"},
    ):
        answer = client.get("hispec/query", params=params)
        assert answer.status_code == 200 and answer.json() == NO_MATCH, params
    assert client.get("hispec/query", params={"cal_type": "dark"}).status_code == 200
    bad = client.get("hispec/query", params={"date_time_start": "not a time"})
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"


def test_single_columns_limit_offset(start_archive):
    archive = start_archive(extra_args=("--query-batch", str(BATCH)))
    client = archive.client("write")
    add(client, many_records(500))
    everything = client.get("hispec/query").json()
    assert len(everything) == 500

    target = everything[123]
    assert client.get("hispec/query", params={"cal_id": target["id"]}).json() == target
    assert client.get("hispec/query", params={"fetch": "first"}).json() == everything[0]
    flats = [r for r in everything if r["cal_type"] == "flat"]
    first_flat = client.get("hispec/query", params={"fetch": "first", "cal_type": "flat"})
    assert first_flat.json() == flats[0]
    assert client.get("hispec/query", params={"cal_type": "flat"}).json() == flats

    ids_types = client.get("hispec/query", params={"columns": "cal_type,id"}).json()
    assert ids_types == [{"cal_type": r["cal_type"], "id": r["id"]} for r in everything]
    one = client.get("hispec/query", params={"cal_id": target["id"], "columns": "id"}).json()
    assert one == {"id": target["id"]}

    for limit, offset in ((120, 30), (1, 0), (49, 51), (1000, 450), (50, 0)):
        page = client.get("hispec/query", params={"limit": limit, "offset": offset}).json()
        assert page == everything[offset : offset + limit], (limit, offset)
    assert client.get("hispec/query", params={"offset": 499}).json() == everything[499:]


def _server_reading_postgres(db_url: str) -> list[int]:
    """Backends of the archive's database inside a transaction (an open cursor), by pid."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
        ).fetchall()
    return [row[0] for row in rows]


def _wal_frames_pinned(root) -> bool:
    """Whether a reader's snapshot keeps SQLite from copying every WAL frame back."""
    conn = sqlite3.connect(root / "archive.db", timeout=0)
    try:
        _busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    return done < log


def _chunks(response: httpx.Response) -> Iterator[bytes]:
    yield from response.iter_raw()


def test_sent_while_reading_and_a_snapshot(start_archive, catalog_url):
    """First bytes leave while rows are still unread; changes meanwhile are not in the answer."""
    archive = start_archive(extra_args=("--query-batch", "5"))
    writer = archive.client("write")
    add(writer, [make_record(blob=BIG_TEXT, note="old") for _ in range(BIG_COUNT)])
    before = writer.get("hispec/query").json()
    assert len(before) == BIG_COUNT
    if catalog_url is None:
        assert not _wal_frames_pinned(archive.root)
    else:
        assert _server_reading_postgres(catalog_url) == []

    with snug_client(archive) as reader, reader.stream("GET", "hispec/query") as response:
        assert response.status_code == 200
        chunks = _chunks(response)
        head = next(chunks)
        assert head.startswith(b"[")
        # Change one record already sent and one not yet sent, and add a new one.
        first, last = before[0], before[-1]
        changed = [dict(first, note="new"), dict(last, note="new")]
        for record in changed:
            for server_field in ("last_updated", "seq"):
                record.pop(server_field)
        newcomer = make_record(blob="small")
        add(writer, [*changed, newcomer])
        # The server is still reading its snapshot: it sent the first bytes first.
        if catalog_url is None:
            assert _wal_frames_pinned(archive.root)
        else:
            assert len(_server_reading_postgres(catalog_url)) == 1
        body = head + b"".join(chunks)

    streamed = json.loads(body)
    assert streamed == before  # exactly the records as they were: none twice, none new
    after = writer.get("hispec/query").json()
    assert {r["id"] for r in after[-3:]} == {first["id"], last["id"], newcomer["id"]}
    assert len(after) == BIG_COUNT + 1
    assert {r["note"] for r in after if r["id"] in (first["id"], last["id"])} == {"new"}
    # The connection went back to the pool when the answer was complete.
    if catalog_url is None:
        assert not _wal_frames_pinned(archive.root)
    else:
        assert _server_reading_postgres(catalog_url) == []


def test_catalog_failure_mid_stream_breaks_the_body(start_archive, catalog_url):
    """An error after the first bytes closes the connection: the client sees a broken body."""
    if catalog_url is None:
        pytest.skip("PostgreSQL only: a SQLite read cannot be broken from outside the server")
    archive = start_archive(extra_args=("--query-batch", "5"))
    writer = archive.client("write")
    add(writer, [make_record(blob=BIG_TEXT) for _ in range(BIG_COUNT)])

    with snug_client(archive) as reader, reader.stream("GET", "hispec/query") as response:
        assert response.status_code == 200
        chunks = _chunks(response)
        assert next(chunks).startswith(b"[")
        (pid,) = _server_reading_postgres(catalog_url)
        with psycopg.connect(catalog_url, autocommit=True) as conn:
            assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass
    assert "closing the connection" in archive.server.log_text()
    # The server goes on answering.
    assert len(writer.get("hispec/query").json()) == BIG_COUNT

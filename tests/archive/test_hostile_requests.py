"""Hostile requests: the archive answers each with a JSON error, stays up and loses nothing.

Numbers too long to convert, oversized and stalled bodies, and a file racing its record.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from support.archive import ArchiveServer, make_record, md5_hex
from support.problems import expect
from support.raw_http import answer_is_whole

HUGE = "9" * 5000  # Python refuses int() of more than 4300 digits


def raw_request(base: str, head: str, body: bytes = b"", timeout: float = 30) -> bytes:
    """Send ``head`` (request line and headers, without the blank line) and ``body``;
    return everything the server answers until it closes or goes quiet."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        received = b""
        while not answer_is_whole(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


# -- numbers too long to convert ---------------------------------------------------------
def test_range_with_too_many_digits(unchanged):
    client = unchanged.client("read")
    path = f"hispec/files/{unchanged.seed['id']}"
    response = client.get(path, headers={"Range": f"bytes={HUGE}-"})
    expect(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == "bytes */10"
    whole = client.get(path, headers={"Range": f"bytes=2-{HUGE}"})
    assert whole.status_code == 206 and whole.content == b"seed bytes"[2:]
    expect(client.get(path, headers={"Range": f"bytes=00000000000000000000{HUGE}-"}), 416)


@pytest.mark.parametrize(
    "value", [HUGE, "0" * 5000 + "4", "²", "1e3", "-1", "+3", ""], ids=lambda v: v[:8]
)
def test_file_size_header_not_a_byte_count(unchanged, value):
    response = unchanged.client("write").put(
        f"hispec/files/{uuid.uuid4()}",
        content=b"abc",
        headers={"X-File-MD5": md5_hex(b"abc"), "X-File-Size": value.encode("latin-1")},
    )
    if value.startswith("0000"):  # leading zeros: a byte count, 4, that is not the body's 3
        expect(response, 422, "checksum_mismatch")
    else:
        expect(response, 400, "bad_request")


def test_content_length_with_too_many_digits(unchanged):
    path = urlsplit(unchanged.base).path
    auth = f"Authorization: Bearer {unchanged.tokens['write']}"
    host = f"Host: {urlsplit(unchanged.base).netloc}"
    for head in (
        f"POST {path}/hispec/add HTTP/1.1\r\n{host}\r\n{auth}\r\nContent-Length: {HUGE}",
        f"PUT {path}/hispec/files/{uuid.uuid4()} HTTP/1.1\r\n{host}\r\n{auth}\r\n"
        f"X-File-MD5: {md5_hex(b'abc')}\r\nContent-Length: {HUGE}",
    ):
        answer = raw_request(unchanged.base, head, b"abc")
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 413), answer[:500]


@pytest.mark.parametrize(
    "route, params",
    [
        ("query", {"limit": HUGE}),
        ("query", {"offset": HUGE}),
        ("query", {"file_size": HUGE}),
        ("query", {"seq": "-" + HUGE}),
        ("query", {"cal_version_min": HUGE}),
        ("query", {"exptime": HUGE}),
        ("query", {"date_time_start": HUGE}),
        ("changes", {"since": HUGE}),
        ("changes", {"limit": HUGE}),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_query_parameters_with_too_many_digits(unchanged, route, params):
    response = unchanged.client("read").get(f"hispec/{route}", params=params)
    if "exptime" in params:  # an equality filter on text: simply no match
        assert response.status_code == 200, response.text
    else:
        expect(response, 400, "bad_request")


@pytest.mark.parametrize(
    "fields",
    [
        {"file_size": HUGE},
        {"file_size": int("9" * 4000)},
        {"exptime": int("9" * 4000)},
        {"cal_version": HUGE},
        {"datetime_obs": HUGE},
    ],
    ids=lambda v: f"{next(iter(v))}-{type(next(iter(v.values()))).__name__}",
)
def test_record_numbers_with_too_many_digits(unchanged, fields):
    body = json.dumps(make_record(**fields)).encode()
    response = unchanged.client("write").post(
        "hispec/add", content=body, headers={"Content-Type": "application/json"}
    )
    expect(response, 400, "bad_request")
    raw = body.replace(b'"cal_type"', f'"big": {HUGE}, "cal_type"'.encode())
    expect(unchanged.client("write").post("hispec/add", content=raw), 400, "bad_request")


# -- bounded add bodies --------------------------------------------------------------------
def add_head(archive, length: int | None = None, chunked: bool = False) -> str:
    parts = urlsplit(archive.base)
    head = (
        f"POST {parts.path}/hispec/add HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {archive.tokens['write']}\r\nContent-Type: application/json"
    )
    if length is not None:
        head += f"\r\nContent-Length: {length}"
    if chunked:
        head += "\r\nTransfer-Encoding: chunked"
    return head


def status_and_body(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body) if body else {}


def test_add_body_declared_too_large_is_refused_before_it_is_read(unchanged):
    """The default limit, 64 MiB: a declared 65 MiB body is refused without waiting for it."""
    answer = raw_request(unchanged.base, add_head(unchanged, length=65 << 20), b"[")
    status, body = status_and_body(answer)
    assert status == 413 and body["error"] == "payload_too_large", answer[:300]
    assert str(64 << 20) in body["message"]


def test_add_limits(start_archive, snapshot):
    archive = start_archive(extra_args=("--max-add-bytes", "100000", "--max-add-records", "50"))
    before = snapshot(archive)
    client = archive.client("write")
    # Declared too large: refused before the body is sent.
    status, body = status_and_body(raw_request(archive.base, add_head(archive, length=100_001)))
    assert status == 413 and "100000" in body["message"], body
    # Sent without a length, in pieces: refused once more than the limit arrived.
    chunk = json.dumps([make_record() for _ in range(10)]).encode()[:-1] + b","

    def pieces():
        for _ in range(100_000 // len(chunk) + 2):
            yield chunk

    body = expect(client.post("hispec/add", content=pieces()), 413, "payload_too_large")
    assert "100000" in body["message"]
    # Too many records: refused, naming the limit, however small each one is.
    expect(client.post("hispec/add", json=[make_record() for _ in range(51)]), 413)
    zeros = b"[" + b",".join([b"0"] * 49_000) + b"]"
    body = expect(client.post("hispec/add", content=zeros), 413, "payload_too_large")
    assert "50 records" in body["message"]
    assert snapshot(archive) == before
    # A bad batch is answered with its first errors and their count, not one per record.
    response = client.post("hispec/add", json=[make_record(id=f"bad{i}") for i in range(50)])
    body = expect(response, 400, "bad_request")
    assert len(body["errors"]) == 10 and body["error_count"] == 50
    assert [e["index"] for e in body["errors"]] == list(range(10))
    assert len(response.content) < 10_000
    assert snapshot(archive) == before
    # At the limits, a batch is welcome.
    batch = [make_record() for _ in range(50)]
    assert client.post("hispec/add", json=batch).status_code == 200
    assert client.get("healthz").status_code == 200


def test_add_default_record_limit(archive, snapshot):
    """By default an add request may hold 10,000 records: one more refuses the whole batch."""
    client = archive.client("write")
    before = snapshot(archive)
    batch = [make_record() for _ in range(10_001)]
    body = expect(client.post("hispec/add", json=batch), 413, "payload_too_large")
    assert "10000 records" in body["message"] and "--max-add-records" in body["message"]
    assert snapshot(archive) == before
    answer = client.post("hispec/add", json=batch[:10_000])
    assert answer.status_code == 200, answer.text
    assert answer.json()["added"] == 10_000
    page = archive.client("read").get("hispec/changes", params={"limit": 10_000}).json()
    assert sorted(r["id"] for r in page["records"]) == sorted(r["id"] for r in batch[:10_000])
    assert not page["more"]


def test_add_body_one_record_too_long(start_archive, snapshot):
    archive = start_archive()
    before = snapshot(archive)
    record = make_record(note="x" * (2 << 20))
    body = expect(archive.client("write").post("hispec/add", json=[record]), 400, "bad_request")
    assert str(1 << 20) in body["message"]
    wide = json.dumps(make_record(**{f"k{i:07d}": 0 for i in range(200_000)})).encode()
    expect(archive.client("write").post("hispec/add", content=wide), 400, "bad_request")
    assert snapshot(archive) == before


# -- a record and its file agree -----------------------------------------------------------
RACE_ROUNDS = 15


def race_round(put_client, add_client, interleave: bool) -> tuple[int, int, dict]:
    """PUT file A of a fresh id while an add names file B for it; return both statuses.

    With ``interleave`` the add is sent while the upload is half-way (the PUT's body
    waits until the add was answered); otherwise both start together and race.
    """
    file_a, file_b = uuid.uuid4().bytes * 4096, uuid.uuid4().bytes * 4096
    record = make_record(file_md5=md5_hex(file_b), file_size=len(file_b))
    half_sent, add_answered = threading.Event(), threading.Event()
    start = threading.Barrier(2)
    answers: dict[str, int] = {}

    def body():
        yield file_a[: len(file_a) // 2]
        half_sent.set()
        if interleave:
            assert add_answered.wait(60)
        yield file_a[len(file_a) // 2 :]

    def put() -> None:
        start.wait(30)
        response = put_client.put(
            f"hispec/files/{record['id']}", content=body(), headers={"X-File-MD5": md5_hex(file_a)}
        )
        answers["put"] = response.status_code

    thread = threading.Thread(target=put)
    thread.start()
    start.wait(30)
    if interleave:
        assert half_sent.wait(60)
    try:
        answers["add"] = add_client.post("hispec/add", json=record).status_code
    finally:
        add_answered.set()
        thread.join(120)
    assert not thread.is_alive()
    return answers["put"], answers["add"], record


@pytest.mark.slow
def test_upload_and_add_of_one_id_race(start_archive):
    """A slow upload of file A and an add naming file B for the same id: one is refused
    (409), on one server and across two server processes sharing the catalog."""
    archive = start_archive()
    second = ArchiveServer(archive.root, db_url=archive.server.db_url).start()
    headers = {"Authorization": f"Bearer {archive.tokens['write']}"}
    try:
        with httpx.Client(base_url=second.base_url + "/", headers=headers, timeout=60) as other:
            outcomes = []
            for round_ in range(4 * RACE_ROUNDS):
                put_client = archive.client("write")
                add_client = other if round_ % 2 else archive.client("write")
                put, added, record = race_round(put_client, add_client, round_ < 2 * RACE_ROUNDS)
                outcomes.append((put, added))
                assert sorted((put, added)) in ([200, 409], [201, 409]), outcomes
                reader = archive.client("read")
                stored = reader.get("hispec/query", params={"cal_id": record["id"]}).json()
                got = reader.get(f"hispec/files/{record['id']}")
                if added == 200:  # the record stands; no file that contradicts it
                    assert stored["file_md5"] == record["file_md5"]
                    assert got.status_code == 404, got.status_code
                else:  # the file stands; no record names other bytes
                    assert got.status_code == 200 and md5_hex(got.content) != record["file_md5"]
                    assert "id" not in stored
    finally:
        second.stop()


# -- stalled bodies ------------------------------------------------------------------------
def wait_for(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (30 s at most)."""
    sock.settimeout(30)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_stalled_upload_is_dropped_with_its_partial_file(start_archive, snapshot):
    archive = start_archive(extra_args=("--body-timeout", "1"))
    before = snapshot(archive)
    parts = urlsplit(archive.base)
    incoming = archive.root / "files" / ".incoming"
    cal_id = str(uuid.uuid4())
    head = (
        f"PUT {parts.path}/hispec/files/{cal_id} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {archive.tokens['write']}\r\n"
        f"X-File-MD5: {md5_hex(b'x' * 100_000)}\r\nContent-Length: 100000\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head.encode() + b"x" * 30_000)  # then silence
        assert wait_for(lambda: any(incoming.glob("*.part")))
        answer = read_until_closed(sock)  # the server answers and closes
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "request_timeout"
    assert not any(incoming.iterdir())
    assert archive.client("read").get(f"hispec/files/{cal_id}").status_code == 404
    assert snapshot(archive) == before
    # A stalled add is dropped the same way; the server keeps serving.
    record = json.dumps(make_record()).encode()
    head = add_head(archive, length=len(record)) + "\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head.encode() + record[:20])
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert snapshot(archive) == before
    assert archive.client("write").post("hispec/add", content=record).status_code == 200

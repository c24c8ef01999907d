"""Bad input: each case gets the status and JSON error of PROTOCOL.md and changes nothing."""

from __future__ import annotations

import json
import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest

from koa_middleware.archive.catalog import Catalog
from koa_middleware.archive.tokens import TokenStore
from koa_middleware.records import ARCHIVE_REQUIRED_FIELDS
from support.archive import make_record, md5_hex, upload
from support.problems import expect


def post_raw(client, body: bytes, inst: str = "hispec"):
    return client.post(f"{inst}/add", content=body, headers={"Content-Type": "application/json"})


def add(client, records, inst: str = "hispec"):
    return post_raw(client, json.dumps(records).encode(), inst)


@pytest.fixture
def unchanged(unchanged, sentinel):
    """As the archive tests' ``unchanged``, and the sentinel outside the archive untouched."""
    yield unchanged
    assert sentinel.read_text() == "untouched"


def test_malformed_json(unchanged):
    client = unchanged.client("write")
    for body in (b'{"id": ', b"not json", b"\xff\xfe", b"[" * 100000):
        expect(post_raw(client, body), 400, "bad_request")


def test_one_invalid_record_rejects_the_batch(unchanged):
    batch = [make_record(), make_record(id="nope"), make_record(), make_record(filename="../x")]
    body = expect(add(unchanged.client("write"), batch), 400, "bad_request")
    assert [e["index"] for e in body["errors"]] == [1, 3]
    assert all(e["reason"] for e in body["errors"])


def test_batch_repeating_an_id_or_filename(unchanged):
    first = make_record()
    body = expect(add(unchanged.client("write"), [first, dict(first)]), 400)
    assert body["errors"][0]["index"] == 1
    twin = make_record(filename=first["filename"])
    expect(add(unchanged.client("write"), [first, twin]), 400)


@pytest.mark.parametrize("field", ARCHIVE_REQUIRED_FIELDS)
def test_missing_required_field(unchanged, field):
    record = make_record()
    del record[field]
    body = expect(add(unchanged.client("write"), record), 400)
    assert field in body["errors"][0]["reason"]
    expect(add(unchanged.client("write"), dict(make_record(), **{field: None})), 400)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "12345", 42, "", "../../sentinel.txt"])
def test_bad_id(unchanged, bad_id):
    expect(add(unchanged.client("write"), make_record(id=bad_id)), 400)


@pytest.mark.parametrize(
    "filename",
    [
        "../sentinel.txt",
        "../../sentinel.txt",
        "a/b.fits",
        "a\\b.fits",
        "..",
        ".",
        "",
        "x\x00y.fits",
        "tab\there.fits",
        "é" * 200,  # 400 bytes in UTF-8
    ],
)
def test_bad_filename(unchanged, filename):
    expect(add(unchanged.client("write"), make_record(filename=filename)), 400)


@pytest.mark.parametrize("column", ["bad-name", "1abc", "a" * 64, "with space", "ünï", "a;DROP"])
def test_bad_column_name(unchanged, column):
    expect(add(unchanged.client("write"), make_record(**{column: 1})), 400)
    query = unchanged.client("read").get("hispec/query", params={column: "1"})
    expect(query, 400)


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], "nul\x00inside", float("nan")])
def test_bad_value(unchanged, value):
    expect(add(unchanged.client("write"), make_record(spectrograph=value)), 400)


@pytest.mark.parametrize(
    "field, value",
    [
        ("datetime_obs", "yesterday"),
        ("cal_version", "1000"),
        ("cal_version", "0"),
        ("file_md5", "xyz"),
        ("file_size", -1),
        ("origin", ""),
    ],
)
def test_bad_field_value(unchanged, field, value):
    expect(add(unchanged.client("write"), make_record(**{field: value})), 400)


def only_reason(body: dict) -> str:
    """The reason of the one bad record of a refused add."""
    assert body["error_count"] == 1 and len(body["errors"]) == 1, body
    return body["errors"][0]["reason"]


def test_impossible_timestamp(unchanged):
    record = make_record(datetime_obs="2025-13-45T99:00:00.000")
    reason = only_reason(expect(add(unchanged.client("write"), record), 400, "bad_request"))
    assert "datetime_obs" in reason and "YYYY-MM-DDTHH:MM:SS.sss" in reason, reason


@pytest.mark.parametrize(
    "filename, rule",
    [
        ("dark\x85001.fits", "control character"),  # C1: NEXT LINE
        ("dark_stif.\u202efits", "bidirectional"),  # RIGHT-TO-LEFT OVERRIDE
        ("dark_\u2066stif.\u2069fits", "bidirectional"),  # LEFT-TO-RIGHT ISOLATE ... POP
    ],
    ids=["c1-control", "bidi-override", "bidi-isolate"],
)
def test_filename_that_displays_as_another(unchanged, filename, rule):
    response = add(unchanged.client("write"), make_record(filename=filename))
    reason = only_reason(expect(response, 400, "bad_request"))
    assert "file name" in reason and rule in reason, reason
    assert filename not in response.text  # shown escaped, never as it would display


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1], ids=["2**63", "-2**63-1"])
def test_integer_past_64_bits(unchanged, value):
    response = add(unchanged.client("write"), make_record(gain=value))
    reason = only_reason(expect(response, 400, "bad_request"))
    assert "'gain'" in reason and "64 bits" in reason and str(value) in reason, reason


def test_integers_at_the_64_bit_bounds_are_kept_exactly(archive):
    client = archive.client("write")
    records = [make_record(gain=2**63 - 1), make_record(gain=-(2**63))]
    assert add(client, records).status_code == 200
    reader = archive.client("read")
    for record in records:
        stored = reader.get("hispec/query", params={"cal_id": record["id"]}).json()
        assert stored["gain"] == record["gain"]


def test_large_floats_come_back_as_the_same_floats(archive):
    """PostgreSQL's jsonb would give 3.634241836893973e+16 back as a whole number."""
    client = archive.client("write")
    values = [3.634241836893973e16, -1e300, 1e16, 123456789012345.5, 1.5e-07]
    records = [make_record(exptime=value) for value in values]
    assert add(client, records).status_code == 200
    reader = archive.client("read")
    for record in records:
        stored = reader.get("hispec/query", params={"cal_id": record["id"]}).json()
        assert type(stored["exptime"]) is float and stored["exptime"] == record["exptime"]


def test_filename_taken_by_another_record(unchanged):
    seed = unchanged.seed
    expect(add(unchanged.client("write"), make_record(filename=seed["filename"])), 409, "conflict")


def test_add_whose_md5_disagrees_with_the_stored_file(unchanged):
    changed = dict(unchanged.seed, file_md5=md5_hex(b"other bytes"))
    expect(add(unchanged.client("write"), changed), 409, "conflict")
    resized = dict(unchanged.seed, file_size=1)
    expect(add(unchanged.client("write"), resized), 409, "conflict")


def test_upload_md5_mismatch(unchanged):
    cal_id = str(uuid.uuid4())
    response = unchanged.client("write").put(
        f"hispec/files/{cal_id}", content=b"abc", headers={"X-File-MD5": md5_hex(b"abd")}
    )
    expect(response, 422, "checksum_mismatch")
    assert unchanged.client("read").get(f"hispec/files/{cal_id}").status_code == 404


def test_upload_length_mismatch(unchanged):
    response = unchanged.client("write").put(
        f"hispec/files/{uuid.uuid4()}",
        content=b"abc",
        headers={"X-File-MD5": md5_hex(b"abc"), "X-File-Size": "4"},
    )
    expect(response, 422, "checksum_mismatch")


def test_upload_without_or_with_bad_md5_header(unchanged):
    client = unchanged.client("write")
    expect(client.put(f"hispec/files/{uuid.uuid4()}", content=b"abc"), 400)
    bad = client.put(f"hispec/files/{uuid.uuid4()}", content=b"a", headers={"X-File-MD5": "zz"})
    expect(bad, 400)


def test_upload_cut_short_leaves_nothing(unchanged):
    """A client that dies mid-upload: the partial body is never stored nor served."""
    parts = urlsplit(unchanged.base)
    cal_id = str(uuid.uuid4())
    head = (
        f"PUT {parts.path}/hispec/files/{cal_id} HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\nAuthorization: Bearer {unchanged.tokens['write']}\r\n"
        f"X-File-MD5: {md5_hex(b'x' * 50000)}\r\nContent-Length: 50000\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head.encode() + b"x" * 20000)
    # The server notices the disconnect and deletes the partial file; it is never served.
    assert unchanged.client("read").get(f"hispec/files/{cal_id}").status_code == 404
    incoming = unchanged.root / "files" / ".incoming"
    # The server may not have begun the upload yet: wait for its partial file to
    # appear (it may also come and go between two looks), then for it to go.
    deadline = time.monotonic() + 3
    while not any(incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    deadline = time.monotonic() + 30
    while any(incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(incoming.iterdir())


def test_upload_larger_than_the_limit(unchanged):
    client = unchanged.client("write")
    data = b"y" * 150_000
    expect(upload(client, str(uuid.uuid4()), data), 413, "payload_too_large")

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(15):
            yield b"z" * 10_000

    response = client.put(
        f"hispec/files/{uuid.uuid4()}", content=chunks(), headers={"X-File-MD5": md5_hex(data)}
    )
    expect(response, 413, "payload_too_large")


def test_second_upload_with_different_bytes(unchanged):
    expect(upload(unchanged.client("write"), unchanged.seed["id"], b"new bytes"), 409, "conflict")
    assert unchanged.client("read").get(f"hispec/files/{unchanged.seed['id']}").content == (
        b"seed bytes"
    )


def test_upload_refused_when_record_names_other_md5(archive):
    record = make_record(file_md5=md5_hex(b"expected"))
    client = archive.client("write")
    assert add(client, record).status_code == 200
    expect(upload(client, record["id"], b"something else"), 409, "conflict")
    assert upload(client, record["id"], b"expected").status_code == 201


def test_upload_refused_when_record_names_other_size(archive, snapshot):
    """Record first, file second: a file of the recorded MD5 but another size is refused."""
    data = b"the calibration bytes"
    record = make_record(file_md5=md5_hex(data), file_size=len(data) + 1)
    client = archive.client("write")
    assert add(client, record).status_code == 200
    before = snapshot(archive)
    body = expect(upload(client, record["id"], data), 409, "conflict")
    assert record["id"] in body["message"]
    assert archive.client("read").get(f"hispec/files/{record['id']}").status_code == 404
    assert snapshot(archive) == before
    assert not any((archive.root / "files" / ".incoming").iterdir())


@pytest.mark.parametrize("inst", ["nosuch", "..", "hispec2"])
def test_unknown_instrument(unchanged, inst):
    client = unchanged.client("write")
    expect(client.get(f"{inst}/query"), 404, "not_found")
    expect(add(client, make_record(), inst=inst), 404, "not_found")
    expect(upload(client, str(uuid.uuid4()), b"abc", inst=inst), 404, "not_found")


def test_no_wrong_or_revoked_token(unchanged):
    catalog = Catalog.open(unchanged.root, unchanged.server.db_url)
    try:
        tokens = TokenStore(catalog.engine)
        revoked = tokens.create(f"gone-{uuid.uuid4().hex[:6]}", "admin")
        assert unchanged.client(token=revoked).get("hispec/query").status_code == 200
        tokens.revoke(next(t.name for t in tokens.list() if t.name.startswith("gone-")))
    finally:
        catalog.close()
    for client in (
        unchanged.client(None),
        unchanged.client(token="koa_not-a-real-token"),
        unchanged.client(token=revoked),
    ):
        for response in (
            client.get("hispec/query"),
            client.get("hispec/lastUpdated"),
            client.get("hispec/changes"),
            client.get(f"hispec/files/{unchanged.seed['id']}"),
            client.get("hispec/download", params={"cal_id": unchanged.seed["id"]}),
            add(client, make_record()),
            upload(client, str(uuid.uuid4()), b"abc"),
        ):
            expect(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
    basic = unchanged.client(None).get("hispec/query", headers={"Authorization": "Basic eDp5"})
    expect(basic, 401)


def test_read_token_cannot_write(unchanged):
    client = unchanged.client("read")
    expect(add(client, make_record()), 403, "forbidden")
    expect(upload(client, str(uuid.uuid4()), b"abc"), 403, "forbidden")


def test_range_past_the_end(unchanged):
    client = unchanged.client("read")
    path = f"hispec/files/{unchanged.seed['id']}"
    response = client.get(path, headers={"Range": "bytes=10-"})  # the file has 10 bytes
    expect(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == "bytes */10"
    expect(client.get(path, headers={"Range": "lines=1-2"}), 400)


@pytest.mark.parametrize(
    "params",
    [
        {"cal_id": "bad"},
        {"fetch": "some"},
        {"date_time_start": "not a date"},
        {"last_updated_end": "2024-13-01"},
        {"cal_version_min": "abc"},
        {"limit": "-1"},
        {"offset": "x"},
        {"columns": "id,bad-name"},
        {"file_size": "big"},
        {"file_size": str(10**30)},
        {"spectrograph": "nul\x00"},
    ],
)
def test_bad_query_parameters(unchanged, params):
    expect(unchanged.client("read").get("hispec/query", params=params), 400, "bad_request")


@pytest.mark.parametrize(
    "params",
    [{"since": "abc"}, {"since": "-1"}, {"limit": "0"}, {"limit": "10001"}, {"since": str(10**30)}],
)
def test_bad_changes_parameters(unchanged, params):
    expect(unchanged.client("read").get("hispec/changes", params=params), 400, "bad_request")


# What each bad id in a file URL gets, and why:
# - an encoded slash (%2F) is decoded before routing, so ``files/../../sentinel.txt`` has
#   more path segments than ``files/{cal_id}``: no route matches, 404 ``not_found``, and the
#   id never reaches a handler;
# - a bare ``..`` is resolved by the client (RFC 3986 dot segments) before it is sent:
#   the request is for ``hispec`` itself, which is no route, 404 ``not_found``;
# - anything that reaches the handler as one segment (``%2E%2E`` is ``..`` there) is not a
#   UUID: 400 ``bad_request``, as for an ``add`` with a bad id.
@pytest.mark.parametrize(
    "cal_id, status, code",
    [
        ("..%2F..%2Fsentinel.txt", 404, "not_found"),
        ("..%2Fsentinel.txt", 404, "not_found"),
        ("..", 404, "not_found"),
        ("%2E%2E", 400, "bad_request"),
        ("not-an-id", 400, "bad_request"),
        ("%00", 400, "bad_request"),
    ],
)
def test_bad_file_id(unchanged, cal_id, status, code):
    client = unchanged.client("write")
    expect(client.get(f"hispec/files/{cal_id}"), status, code)
    put = client.put(f"hispec/files/{cal_id}", content=b"x", headers={"X-File-MD5": md5_hex(b"x")})
    expect(put, status, code)
    # v1 takes the id as a query parameter: never a route question, always 400
    cal_id = cal_id.replace("%2F", "/").replace("%2E", ".")
    expect(client.get("hispec/download", params={"cal_id": cal_id}), 400, "bad_request")


def test_wrong_method_and_unknown_route(unchanged):
    client = unchanged.client("write")
    expect(client.delete("hispec/query"), 405, "method_not_allowed")
    expect(client.get("hispec/nothing-here"), 404, "not_found")


def test_server_fields_from_the_client_are_ignored(archive):
    client = archive.client("write")
    record = make_record(seq=999, last_updated="2000-01-01T00:00:00.000")
    assert add(client, record).status_code == 200
    stored = client.get("hispec/query", params={"cal_id": record["id"]}).json()
    assert stored["seq"] == 1
    assert stored["last_updated"] > "2020-01-01"
    page = client.get("hispec/changes", params={"since": 998}).json()
    assert page["records"] == []

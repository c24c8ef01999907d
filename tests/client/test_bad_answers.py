"""The client against a real, misbehaving HTTP server: every bad answer gets a clear error.

The server here is a real HTTP/1.1 server on 127.0.0.1 (tests/support/scripted_http.py)
that sends HTML, invalid JSON, bodies cut short, hostile records, hostile zips
and corrupt files, and counts what it is asked.
"""

from __future__ import annotations

import hashlib
import json
import socket

import pytest

from koa_middleware.cache.layout import CacheLayout
from koa_middleware.client.downloads import fetch_to_cache
from koa_middleware.client.remote_database import RemoteCalibrationDB
from koa_middleware.client.sync import pull_records
from koa_middleware.database.local_database import LocalCalibrationDB
from koa_middleware.errors import (
    ArchiveError,
    AuthenticationError,
    ChecksumMismatchError,
    InvalidRecordError,
    RemoteUnavailableError,
)
from support.scripted_http import (
    ScriptedHTTPServer,
    file_answer,
    json_answer,
    raw_answer,
    truncated_answer,
    zip_bytes,
)

CAL_ID = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"
DATA = bytes(range(256)) * 400
QUERY = "/api/calibrations/hispec/query"
FILES = f"/api/calibrations/hispec/files/{CAL_ID}"
DOWNLOAD = "/api/calibrations/hispec/download"


def make_record(**changes):
    record = {
        "id": CAL_ID,
        "filename": "hispec_dark_001.fits",
        "cal_type": "dark",
        "datetime_obs": "2026-02-12T00:00:00.000",
        "origin": "KECK",
        "cal_version": "001",
        "last_updated": "2026-02-12T01:00:00.000",
        "file_md5": hashlib.md5(DATA).hexdigest(),
        "file_size": len(DATA),
    }
    record.update(changes)
    return record


@pytest.fixture(params=[1, 2], ids=["v1", "v2"])
def protocol(request):
    return request.param


@pytest.fixture
def server(protocol):
    with ScriptedHTTPServer() as server:
        if protocol == 2:
            server.route(
                "GET", "/api/calibrations/healthz", json_answer({"status": "ok", "protocol": 2})
            )
        yield server


@pytest.fixture
def remote(server, monkeypatch):
    monkeypatch.delenv("KOA_API_TOKEN", raising=False)
    monkeypatch.delenv("KECK_OBSERVER_EMAIL", raising=False)
    with RemoteCalibrationDB(
        "hispec", url=server.url + "/api/calibrations", token="t0ken-value", retries=2, backoff=0.01
    ) as remote:
        yield remote


def cache_is_clean(layout: CacheLayout) -> bool:
    return not any(layout.calibrations_dir.iterdir()) and not any(layout.tmp_dir.iterdir())


def test_protocol_detection(remote, protocol):
    assert remote.protocol == protocol


@pytest.mark.parametrize(
    "answer, words",
    [
        (raw_answer(b"<html><body>Please log in</body></html>", content_type="text/html"), "HTML"),
        (raw_answer(b'[{"id": "1b4e28ba-'), "invalid JSON"),
        (
            truncated_answer(json.dumps([make_record()]).encode()[:50], declared=400),
            "cut its answer short",
        ),
        (json_answer({"records": 3}), "unexpected shape"),
    ],
    ids=["html", "invalid-json", "truncated", "wrong-shape"],
)
def test_bad_query_answers_raise_clear_errors(remote, server, answer, words):
    server.route("GET", QUERY, answer)
    with pytest.raises(ArchiveError, match=words) as info:
        remote.query(cal_type="dark")
    assert server.url in str(info.value)


def test_truncated_answer_is_retried(remote, server):
    full = json.dumps([make_record()]).encode()
    answers = [truncated_answer(full[:40], declared=len(full)), raw_answer(full)]
    server.route("GET", QUERY, lambda ex: answers.pop(0)(ex))
    assert remote.query()[0]["id"] == CAL_ID


@pytest.mark.parametrize(
    "bad",
    [
        {"filename": "../../outside.fits"},
        {"filename": "sub/dir.fits"},
        {"bad-column; DROP TABLE hispec": 1},
    ],
    ids=["traversal", "subdir", "bad-column"],
)
def test_hostile_records_are_refused_and_nothing_is_stored(remote, server, tmp_path, bad):
    records = [
        make_record(id="2b4e28ba-2fa1-4d2b-883f-0016d3cca427", filename="ok.fits"),
        make_record(**bad),
    ]
    server.route("GET", QUERY, json_answer(records))
    server.route(
        "GET",
        "/api/calibrations/hispec/changes",
        json_answer({"records": records, "next": 2, "more": False}),
    )
    with pytest.raises(InvalidRecordError, match="sent an invalid record"):
        remote.query()
    local = LocalCalibrationDB(tmp_path / "local.db", "hispec")
    with pytest.raises(InvalidRecordError):
        pull_records(local, remote)
    assert len(local) == 0
    assert local.get_meta("changes_cursor " + remote.display_url + " hispec") is None
    assert not (tmp_path / "outside.fits").exists()


def test_no_match_answers(remote, server):
    server.route("GET", QUERY, json_answer({"message": "No matching calibrations found."}))
    assert remote.query(cal_type="flat") == []
    # an empty list for every kind of query, as the reference implementation answers
    assert remote.query(cal_id=CAL_ID) == []
    assert remote.query(fetch="first") == []


def test_single_record_answers_in_both_shapes(remote, server):
    server.route(
        "GET", QUERY, json_answer([make_record(last_updated="Thu, 12 Feb 2026 00:00:00 GMT")])
    )
    record = remote.query(cal_id=CAL_ID)
    assert record["last_updated"] == "2026-02-12T00:00:00.000"
    server.route("GET", QUERY, json_answer(make_record()))
    assert remote.query(fetch="first")["id"] == CAL_ID
    assert remote.query()[0]["id"] == CAL_ID


def test_server_errors_are_retried_on_reads_only(remote, server):
    answers = [
        json_answer({"error": "busy"}, status=503),
        json_answer({"error": "slow down"}, status=429, headers={"Retry-After": "0"}),
        json_answer({"last_updated": None}),
    ]
    server.route("GET", "/api/calibrations/hispec/lastUpdated", lambda ex: answers.pop(0)(ex))
    assert remote.get_last_updated() is None
    assert server.hits[("GET", "/api/calibrations/hispec/lastUpdated")] == 3

    server.route(
        "POST",
        "/api/calibrations/hispec/add",
        json_answer({"error": "x", "message": "Database is down."}, status=503),
    )
    with pytest.raises(ArchiveError, match="503") as info:
        remote.add(make_record())
    assert "Database is down." in str(info.value) and info.value.status == 503
    assert server.hits[("POST", "/api/calibrations/hispec/add")] == 1


def test_persistent_server_error_names_url_and_status(remote, server):
    server.route(
        "GET", QUERY, json_answer({"error": "boom", "message": "Internal failure."}, status=500)
    )
    with pytest.raises(ArchiveError) as info:
        remote.query()
    assert info.value.status == 500 and "500" in str(info.value) and server.url in str(info.value)
    assert server.hits[("GET", QUERY)] == 3


def test_auth_errors_name_the_credential_kind(remote, server):
    server.route(
        "GET", QUERY, json_answer({"error": "unauthorized", "message": "Bad token."}, status=401)
    )
    with pytest.raises(AuthenticationError, match="bearer token from the token argument") as info:
        remote.query()
    assert "t0ken-value" not in str(info.value) and info.value.status == 401
    server.route(
        "POST", "/api/calibrations/hispec/add", json_answer({"error": "forbidden"}, status=403)
    )
    with pytest.raises(AuthenticationError, match="403.*write"):
        remote.add(make_record())


def test_unreachable_archive_names_the_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/calibrations"
    with RemoteCalibrationDB("hispec", url=url, retries=1, backoff=0.01) as remote:
        with pytest.raises(RemoteUnavailableError, match=f"127.0.0.1:{port}") as info:
            remote.get_last_updated()
    assert isinstance(info.value, ConnectionError)


# -- files -------------------------------------------------------------------


def serve_file(server, protocol, data, record=None):
    record = record or make_record()
    if protocol == 2:
        server.route("GET", FILES, file_answer(data))
    else:
        server.route(
            "GET",
            DOWNLOAD,
            raw_answer(zip_bytes([(record["filename"], data)]), content_type="application/zip"),
        )


def test_download_verifies_and_places_the_file(remote, server, protocol, layout, tmp_path):
    serve_file(server, protocol, DATA)
    path = fetch_to_cache(remote, make_record(), layout)
    assert path == layout.calibrations_dir / "hispec_dark_001.fits"
    assert path.read_bytes() == DATA
    assert not any(layout.tmp_dir.iterdir())
    server.route("GET", QUERY, json_answer([make_record()]))
    out = remote.download_calibration_file(CAL_ID, tmp_path / "out")
    assert out == str(tmp_path / "out" / "hispec_dark_001.fits")
    assert (tmp_path / "out" / "hispec_dark_001.fits").read_bytes() == DATA
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["hispec_dark_001.fits"]


def test_corrupt_file_raises_and_leaves_nothing(remote, server, protocol, layout):
    corrupt = bytearray(DATA)
    corrupt[1000] ^= 0xFF
    serve_file(server, protocol, bytes(corrupt))
    with pytest.raises(ChecksumMismatchError, match="MD5"):
        fetch_to_cache(remote, make_record(), layout)
    assert cache_is_clean(layout)


def test_short_file_raises_and_leaves_nothing(remote, server, protocol, layout):
    serve_file(server, protocol, DATA[:-10])
    with pytest.raises(ChecksumMismatchError, match="bytes"):
        fetch_to_cache(remote, make_record(), layout)
    assert cache_is_clean(layout)


def test_a_file_one_byte_short_of_its_record_is_refused_on_its_size(
    remote, server, protocol, layout
):
    """The right bytes (the record's MD5 is theirs), but the record says one byte more.

    Only the size check can refuse them (v1 reads the size in the zip's header).
    """
    serve_file(server, protocol, DATA)
    record = make_record(file_size=len(DATA) + 1)
    sizes = rf"(has|holds) {len(DATA)} bytes but its record says {len(DATA) + 1};"
    with pytest.raises(ChecksumMismatchError, match=sizes):
        fetch_to_cache(remote, record, layout)
    assert cache_is_clean(layout)


@pytest.mark.parametrize(
    "members, symlink, words",
    [
        ([("hispec_dark_001.fits", DATA), ("extra.txt", b"x")], False, "2 members"),
        ([("../hispec_dark_001.fits", DATA)], False, "member named '../hispec_dark_001.fits'"),
        ([("../../../escape.fits", DATA)], False, "member named"),
        ([("/tmp/abs.fits", DATA)], False, "member named"),
        ([("other.fits", DATA)], False, "member named 'other.fits'"),
        ([("hispec_dark_001.fits", b"/etc/passwd")], True, "link"),
        ([], False, "0 members"),
    ],
    ids=["two-members", "dotdot", "deep-dotdot", "absolute", "other-name", "symlink", "empty"],
)
@pytest.mark.parametrize("protocol", [1], ids=["v1"])
def test_hostile_zips_are_refused(remote, server, layout, tmp_path, members, symlink, words):
    server.route(
        "GET",
        DOWNLOAD,
        raw_answer(zip_bytes(members, symlink=symlink), content_type="application/zip"),
    )
    with pytest.raises(ArchiveError, match=words):
        fetch_to_cache(remote, make_record(), layout)
    assert cache_is_clean(layout)
    assert (
        not (tmp_path / "escape.fits").exists()
        and not (layout.root / "calibrations" / "hispec_dark_001.fits").exists()
    )


@pytest.mark.parametrize("protocol", [1], ids=["v1"])
def test_not_a_zip_is_refused(remote, server, layout):
    server.route("GET", DOWNLOAD, raw_answer(b"<html>login</html>", content_type="text/html"))
    with pytest.raises(ArchiveError, match="not a valid zip"):
        fetch_to_cache(remote, make_record(), layout)
    assert cache_is_clean(layout)


@pytest.mark.parametrize("protocol", [2], ids=["v2"])
def test_broken_download_resumes_with_range(remote, server, layout):
    server.route("GET", FILES, file_answer(DATA, cut_first_after=30000))
    path = fetch_to_cache(remote, make_record(), layout)
    assert path.read_bytes() == DATA
    ranges = [ex.headers.get("range") for ex in server.exchanges if ex.path == FILES]
    assert ranges == [None, "bytes=30000-"]


@pytest.mark.parametrize("protocol", [2], ids=["v2"])
def test_partial_of_other_bytes_is_replaced(remote, server, layout):
    # A partial file left behind that is longer than the real file: the server answers 416.
    (layout.tmp_dir / f"{CAL_ID}.download").write_bytes(b"x" * (len(DATA) + 5))
    server.route("GET", FILES, file_answer(DATA))
    assert fetch_to_cache(remote, make_record(), layout).read_bytes() == DATA


@pytest.mark.parametrize("protocol", [2], ids=["v2"])
def test_corrupt_partial_is_downloaded_again(remote, server, layout):
    # Bytes kept from an earlier attempt that are not the file's: the resumed download
    # does not verify, so it is fetched once more from the first byte.
    (layout.tmp_dir / f"{CAL_ID}.download").write_bytes(b"\0" * 1000)
    server.route("GET", FILES, file_answer(DATA))
    assert fetch_to_cache(remote, make_record(), layout).read_bytes() == DATA
    ranges = [ex.headers.get("range") for ex in server.exchanges if ex.path == FILES]
    assert ranges == ["bytes=1000-", None]
    assert not any(layout.tmp_dir.iterdir())


def test_unreachable_archive_leaves_the_cache_clean(layout):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/calibrations"
    with RemoteCalibrationDB("hispec", url=url, token="t", retries=1, backoff=0.01) as remote:
        with pytest.raises(RemoteUnavailableError, match=f"127.0.0.1:{port}"):
            fetch_to_cache(remote, make_record(), layout)
    assert cache_is_clean(layout)

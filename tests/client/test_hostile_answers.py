"""The client against a hostile archive: every answer bounded, no loop, no file beyond its size.

The archive here (tests/support/hostile_archive.py) streams endless bodies,
gzip bombs, a changes feed whose cursor never moves, files and zips larger
than their records say (or than the archive itself declares), resumed
answers with invalid Content-Range headers, and a v1 list held half-way. Each streaming route
stops by itself after ``cap`` bytes and counts what it sent, so "the client
stopped early" is asserted as "the archive could send at most N bytes before
the client hung up" (N leaves room for the loopback socket buffers).
"""

from __future__ import annotations

import hashlib
import uuid

import pytest

from koa_middleware.cache.layout import CacheLayout
from koa_middleware.client.downloads import fetch_to_cache
from koa_middleware.client.remote_database import RemoteCalibrationDB
from koa_middleware.client.sync import pull_records
from koa_middleware.database.local_database import LocalCalibrationDB
from koa_middleware.errors import ArchiveError, ChecksumMismatchError
from support.hostile_archive import FileAnswer, HostileArchive
from support.scripted_http import json_answer

LIMIT = 1 << 20
#: What the loopback socket buffers may hold after the client stopped reading.
SLACK = 32 << 20
SIZE = 2300


def make_record(index: int = 0, **changes) -> dict:
    data = DATA
    record = {
        "id": str(uuid.UUID(int=index + 1, version=4)),
        "filename": f"hispec_dark_{index:04d}.fits",
        "cal_type": "dark",
        "datetime_obs": "2026-02-12T00:00:00.000",
        "origin": "KECK",
        "cal_version": "001",
        "last_updated": "2026-02-12T01:00:00.000",
        "file_md5": hashlib.md5(data).hexdigest(),
        "file_size": len(data),
    }
    record.update(changes)
    return record


DATA = (bytes(range(256)) * 9)[:SIZE] + bytes(max(0, SIZE - 256 * 9))


@pytest.fixture(params=[1, 2], ids=["v1", "v2"])
def protocol(request):
    return request.param


@pytest.fixture
def archive(protocol):
    with HostileArchive(protocol) as archive:
        yield archive


@pytest.fixture
def remote(archive):
    with RemoteCalibrationDB(
        "hispec",
        url=archive.base_url,
        token="t0ken-value",
        retries=1,
        backoff=0.01,
        max_answer_bytes=LIMIT,
    ) as remote:
        yield remote


def without_size(record: dict) -> dict:
    """The record as an archive that does not know file sizes sends it."""
    return {key: value for key, value in record.items() if key != "file_size"}


def leftovers(layout: CacheLayout) -> list[str]:
    """Every file in the cache folder (there must be none after a refused download)."""
    return sorted(p.name for p in layout.root.rglob("*") if p.is_file() and p.suffix != ".lock")


def test_default_answer_limit_is_256_mib(archive):
    with RemoteCalibrationDB("hispec", url=archive.base_url, token="t") as remote:
        assert remote.max_answer_bytes == 256 << 20
        remote.max_answer_bytes = 5000
        assert remote.http.max_answer_bytes == 5000


def test_endless_query_body_stops_at_the_limit(archive, remote, tmp_path):
    piece = b"".join(b'{"id": "x", "filename": "f.fits"},' for _ in range(1000))
    count = archive.endless(archive.path("query"), b"[", piece)
    with pytest.raises(ArchiveError, match=f"larger than {LIMIT} bytes") as info:
        list(remote.iter_records())
    assert archive.base_url in str(info.value)
    assert count.finished()
    assert not count.capped and count.sent < LIMIT + SLACK


def test_endless_changes_body_stops_at_the_limit(tmp_path):
    with HostileArchive(2) as archive:
        count = archive.endless(archive.path("changes"), b'{"records": [', b" " * 65536)
        local = LocalCalibrationDB(tmp_path / "local.db", "hispec")
        with RemoteCalibrationDB(
            "hispec", url=archive.base_url, token="t", retries=0, max_answer_bytes=LIMIT
        ) as remote:
            with pytest.raises(ArchiveError, match="larger than"):
                pull_records(local, remote)
        assert count.finished()
        assert not count.capped and count.sent < LIMIT + SLACK
        assert len(local) == 0
        local.close()


def test_gzip_bomb_stops_at_the_limit_of_inflated_bytes(archive, remote):
    count = archive.gzip_bomb(archive.path("query"))
    with pytest.raises(ArchiveError, match="decompressed"):
        remote.query()
    assert count.finished()
    # The archive inflated at most the limit plus what the socket buffers held.
    assert not count.capped and count.uncompressed < 64 * LIMIT


def test_changes_cursor_that_does_not_move_is_an_error_after_one_page(tmp_path):
    with HostileArchive(2) as archive:
        archive.stuck_changes([make_record(0)], stuck_at=5)
        local = LocalCalibrationDB(tmp_path / "local.db", "hispec")
        with RemoteCalibrationDB("hispec", url=archive.base_url, token="t", retries=0) as remote:
            with pytest.raises(ArchiveError, match="does not move past 5") as info:
                pull_records(local, remote)
        assert archive.path("changes") in str(info.value)
        # since=0 moved to 5; since=5 stayed at 5: an error, no third request.
        assert archive.hits("changes") == 2
        # The first page (and the cursor that covers it) is kept.
        assert len(local) == 1
        local.close()


def test_oversize_file_stops_at_the_record_size(tmp_path, layout):
    with HostileArchive(2) as archive:
        record = make_record(0)
        count = archive.endless(
            archive.path(f"files/{record['id']}"),
            DATA,
            b"\0" * 65536,
            content_type="application/octet-stream",
        )
        with RemoteCalibrationDB("hispec", url=archive.base_url, token="t", retries=0) as remote:
            with pytest.raises(ChecksumMismatchError, match=f"more than {SIZE} bytes"):
                fetch_to_cache(remote, record, layout)
        assert count.finished()
        assert not count.capped and count.sent < SIZE + SLACK
        assert leftovers(layout) == []


def test_oversize_v1_zip_stops_near_the_record_size(tmp_path, layout):
    with HostileArchive(1) as archive:
        record = make_record(0)
        count = archive.endless(
            archive.path("download"), b"PK\x03\x04", b"\0" * 65536, content_type="application/zip"
        )
        with RemoteCalibrationDB("hispec", url=archive.base_url, token="t", retries=0) as remote:
            with pytest.raises(ChecksumMismatchError, match="more than .* bytes for the zip"):
                fetch_to_cache(remote, record, layout)
        assert count.finished()
        assert not count.capped and count.sent < SIZE + SLACK
        assert leftovers(layout) == []


def test_v1_list_is_parsed_record_by_record_as_it_arrives():
    records = [make_record(i) for i in range(1000)]
    with HostileArchive(1) as archive:
        state = archive.held_list(records, hold_after=500)
        with RemoteCalibrationDB("hispec", url=archive.base_url, token="t", retries=0) as remote:
            stream = remote.iter_records()
            first = next(stream)
            # The archive still holds back the second half (until release is set): the
            # first record came from the part already sent, not from a whole answer.
            assert not archive.release.is_set()
            assert first["id"] == records[0]["id"]
            archive.release.set()
            rest = list(stream)
        assert not state["timed_out"]
        assert [rec["id"] for rec in [first, *rest]] == [rec["id"] for rec in records]


def test_v1_sync_of_a_streamed_list_stores_every_record(tmp_path):
    records = [make_record(i) for i in range(1000)]
    with HostileArchive(1) as archive:
        state = archive.held_list(records, hold_after=1000)
        archive.release.set()
        local = LocalCalibrationDB(tmp_path / "local.db", "hispec")
        with RemoteCalibrationDB(
            "hispec", url=archive.base_url, token="t", retries=0, page_size=100
        ) as remote:
            added = pull_records(local, remote)
        assert len(added) == 1000 and len(local) == 1000
        assert not state["timed_out"]
        local.close()


def test_gzip_bomb_on_the_changes_feed_stops_at_the_limit(tmp_path):
    with HostileArchive(2) as archive:
        count = archive.gzip_bomb(archive.path("changes"), prefix=b'{"records": [')
        local = LocalCalibrationDB(tmp_path / "local.db", "hispec")
        with RemoteCalibrationDB(
            "hispec", url=archive.base_url, token="t", retries=0, max_answer_bytes=LIMIT
        ) as remote:
            with pytest.raises(ArchiveError, match="decompressed") as info:
                pull_records(local, remote)
        assert archive.path("changes") in str(info.value)
        assert count.finished()
        assert not count.capped and count.uncompressed < 64 * LIMIT
        assert len(local) == 0
        local.close()


def test_gzip_bomb_on_the_streamed_v1_list_stops_at_the_limit(tmp_path):
    with HostileArchive(1) as archive:
        count = archive.gzip_bomb(archive.path("query"))
        local = LocalCalibrationDB(tmp_path / "local.db", "hispec")
        with RemoteCalibrationDB(
            "hispec", url=archive.base_url, token="t", retries=0, max_answer_bytes=LIMIT
        ) as remote:
            with pytest.raises(ArchiveError, match="decompressed"):
                list(remote.iter_records())
            with pytest.raises(ArchiveError, match="decompressed"):
                pull_records(local, remote)
        assert count.finished()
        assert not count.capped and count.uncompressed < 64 * LIMIT
        assert len(local) == 0
        local.close()


# -- file answers that declare one thing and do another ---------------------------
CUT = 1000

BAD_RANGES = {
    "5000-digit-start": f"bytes {'9' * 5000}-{SIZE - 1}/{SIZE}",
    "5000-digit-total": f"bytes {CUT}-{SIZE - 1}/{'9' * 5000}",
    "superscript-start": f"bytes \u00b2-{SIZE - 1}/{SIZE}",
    "total-of-2**64": f"bytes {CUT}-{SIZE - 1}/{1 << 64}",
    "last-after-total": f"bytes {CUT}-{SIZE}/{SIZE}",
    "no-unit": f"{CUT}-{SIZE - 1}/{SIZE}",
}


def remote_for(archive: HostileArchive, retries: int = 1) -> RemoteCalibrationDB:
    return RemoteCalibrationDB(
        "hispec", url=archive.base_url, token="t", retries=retries, backoff=0.01
    )


def cut_short() -> FileAnswer:
    """A first answer that promises the whole file and hangs up after CUT bytes."""
    return FileAnswer(200, DATA[:CUT], declared=SIZE)


def partial_path(layout: CacheLayout, record: dict):
    return layout.tmp_dir / f"{record['id']}.download"


@pytest.mark.parametrize("content_range", list(BAD_RANGES.values()), ids=list(BAD_RANGES))
def test_resumed_answer_with_an_invalid_content_range_is_an_archive_error(layout, content_range):
    record = without_size(make_record(0))
    with HostileArchive(2) as archive:
        script = archive.file_answers(
            record["id"],
            [cut_short(), FileAnswer(206, DATA[CUT:], {"Content-Range": content_range})],
        )
        with remote_for(archive) as remote:
            with pytest.raises(ArchiveError, match="invalid Content-Range") as info:
                fetch_to_cache(remote, record, layout)
    message = str(info.value)
    assert record["filename"] in message and "report it to the archive operators" in message
    assert info.value.status == 206 and len(message) < 1000  # a long value is cut short
    assert script.ranges == [None, f"bytes={CUT}-"]
    # No file; only what the archive sent before it broke off, kept for a resume.
    assert leftovers(layout) == [partial_path(layout, record).name]
    assert partial_path(layout, record).read_bytes() == DATA[:CUT]


def test_content_length_beyond_64_bits_is_an_archive_error(layout):
    record = without_size(make_record(0))
    with HostileArchive(2) as archive:
        # 20 digits: the HTTP parser takes it, the download must not.
        answer = FileAnswer(200, DATA, {"Content-Length": "9" * 20}, endless=b"\0" * 65536)
        script = archive.file_answers(record["id"], [answer])
        with remote_for(archive, retries=0) as remote:
            with pytest.raises(ArchiveError, match="invalid Content-Length '9{20}'"):
                fetch_to_cache(remote, record, layout)
        assert script.counts[0].finished()
        assert not script.counts[0].capped and script.counts[0].sent < SIZE + SLACK
    assert not (layout.root / record["filename"]).exists()
    assert leftovers(layout) == []  # not even an empty partial file


def test_file_without_size_stops_at_the_content_range_total(layout):
    record = without_size(make_record(0))
    with HostileArchive(2) as archive:
        answer = FileAnswer(
            206, DATA, {"Content-Range": f"bytes 0-{SIZE - 1}/{SIZE}"}, endless=b"\0" * 65536
        )
        script = archive.file_answers(record["id"], [answer])
        with remote_for(archive, retries=0) as remote:
            with pytest.raises(ChecksumMismatchError, match=f"more than {SIZE} bytes"):
                fetch_to_cache(remote, record, layout)
        assert script.counts[0].finished()
        assert not script.counts[0].capped and script.counts[0].sent < SIZE + SLACK
    assert leftovers(layout) == []


def test_resumed_file_without_size_stops_at_the_content_range_total(layout):
    record = without_size(make_record(0))
    resumed = FileAnswer(
        206, DATA[CUT:], {"Content-Range": f"bytes {CUT}-{SIZE - 1}/{SIZE}"}, endless=b"\0" * 65536
    )
    with HostileArchive(2) as archive:
        # Resumed, too large; then once more from the first byte, the same; then give up.
        script = archive.file_answers(record["id"], [cut_short(), resumed, cut_short(), resumed])
        with remote_for(archive) as remote:
            with pytest.raises(ChecksumMismatchError, match=f"more than {SIZE} bytes"):
                fetch_to_cache(remote, record, layout)
        assert script.ranges == [None, f"bytes={CUT}-", None, f"bytes={CUT}-"]
        assert len(script.counts) == 2
        for count in script.counts:
            assert count.finished()
            assert not count.capped and count.sent < SIZE + SLACK
    assert leftovers(layout) == []


def test_file_without_size_is_read_only_up_to_the_content_length(layout):
    record = without_size(make_record(0))
    with HostileArchive(2) as archive:
        answer = FileAnswer(200, DATA, {"Content-Length": str(SIZE)}, endless=b"\0" * 65536)
        script = archive.file_answers(record["id"], [answer])
        with remote_for(archive, retries=0) as remote:
            path = fetch_to_cache(remote, record, layout)
        assert script.counts[0].finished()
        assert not script.counts[0].capped and script.counts[0].sent < SIZE + SLACK
    # The bytes past the declared length never reached the file: it verifies.
    assert path.read_bytes() == DATA
    assert leftovers(layout) == [record["filename"]]


def test_resumed_download_that_never_verifies_is_tried_once_more_only(layout):
    record = make_record(0)
    wrong = FileAnswer(
        206, b"\xff" * (SIZE - CUT), {"Content-Range": f"bytes {CUT}-{SIZE - 1}/{SIZE}"}
    )
    with HostileArchive(2) as archive:
        script = archive.file_answers(record["id"], [cut_short(), wrong] * 5)
        with remote_for(archive) as remote:
            with pytest.raises(ChecksumMismatchError, match="MD5"):
                fetch_to_cache(remote, record, layout)
    assert script.ranges == [None, f"bytes={CUT}-", None, f"bytes={CUT}-"]
    assert leftovers(layout) == []


@pytest.mark.parametrize(
    "answer, message",
    [
        (FileAnswer(416, headers={"Content-Range": f"bytes */{SIZE}"}), "answered 416"),
        (
            FileAnswer(206, DATA[CUT:], {"Content-Range": f"bytes {CUT}-{SIZE - 1}/{SIZE}"}),
            f"sent its bytes from {CUT} on",
        ),
    ],
    ids=["416", "206-elsewhere"],
)
def test_answer_that_does_not_fit_a_whole_file_request_is_refused_at_once(layout, answer, message):
    record = make_record(0)
    with HostileArchive(2) as archive:
        script = archive.file_answers(record["id"], [answer])
        with remote_for(archive) as remote:
            with pytest.raises(ArchiveError, match=message):
                fetch_to_cache(remote, record, layout)
    assert script.ranges == [None]
    assert not (layout.root / record["filename"]).exists()
    assert leftovers(layout) == []  # not even an empty partial file


def test_retry_after_in_other_digits_is_ignored():
    with HostileArchive(2) as archive:
        archive.route(
            "GET",
            archive.path("changes"),
            json_answer({"message": "busy"}, status=503, headers={"Retry-After": "\u00b2"}),
        )
        with remote_for(archive) as remote:
            with pytest.raises(ArchiveError, match="503"):
                remote.changes(0)
        assert archive.hits("changes") == 2

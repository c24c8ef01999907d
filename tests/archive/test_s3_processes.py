"""Two archive processes on one PostgreSQL catalog and one bucket behave as one archive."""

from __future__ import annotations

import os
import random
import threading

import httpx
import pytest

from support.archive import make_record, md5_hex, upload
from support.changes_follower import follow_while_writing
from support.problems import expect
from support.s3 import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WRITERS = 8
PER_WRITER = 25
#: More than one part (8 MiB): both uploads of one id go through multipart uploads.
LARGE = 9 * 1024 * 1024
#: Seconds a request may take on a busy machine.
TIMEOUT = 120


@pytest.fixture
def pair(start_s3_archive, postgres_url):
    """Two servers, ``(first, second)``, sharing a catalog, a bucket and the tokens."""
    first = start_s3_archive(db_url=postgres_url)
    second = start_s3_archive(db_url=postgres_url, root=first.root)
    return first, second


def _headers(archive) -> dict[str, str]:
    return {"Authorization": f"Bearer {archive.tokens['write']}"}


def test_eight_writers_over_two_processes_and_a_reader_see_every_seq_once(
    pair, s3_bucket, iter_changes
):
    first, second = pair
    written: list[list[dict]] = [[] for _ in range(WRITERS)]

    def writer(index: int) -> None:
        target = (first, second)[index % 2]
        rng = random.Random(index)
        with httpx.Client(
            base_url=target.base + "/", headers=_headers(target), timeout=TIMEOUT
        ) as client:
            for _ in range(PER_WRITER):
                data = rng.randbytes(rng.randint(1, 20_000))
                record = make_record(writer=index, file_md5=md5_hex(data), file_size=len(data))
                assert upload(client, record["id"], data).status_code == 201
                client.post("hispec/add", json=record).raise_for_status()
                written[index].append(record)

    seen = follow_while_writing(writer, first.client("read"), WRITERS, page=7)

    total = WRITERS * PER_WRITER
    assert [record["seq"] for record in seen] == list(range(1, total + 1))
    everything = {r["id"]: r for records in written for r in records}
    assert sorted(r["id"] for r in seen) == sorted(everything)
    for index in range(WRITERS):
        assert [r["id"] for r in seen if r["writer"] == index] == [r["id"] for r in written[index]]
    # One object per acknowledged file, each served whole by both processes.
    assert s3_bucket.objects() == {
        s3_bucket.key("hispec", cal_id): record["file_size"]
        for cal_id, record in everything.items()
    }
    assert s3_bucket.uploads() == []
    assert [r["id"] for r in iter_changes(second.client("read"), "hispec")] == [
        r["id"] for r in seen
    ]
    for cal_id, record in list(everything.items())[::20]:
        for archive in pair:
            response = archive.client("read").get(f"hispec/files/{cal_id}")
            assert md5_hex(response.content) == record["file_md5"]


@pytest.mark.parametrize("same_bytes", [False, True], ids=["other-bytes", "same-bytes"])
def test_one_id_put_through_both_processes_at_once(pair, s3_bucket, same_bytes):
    first, second = pair
    for size in (1000, LARGE, 1000, LARGE):
        cal_id = make_record()["id"]
        bodies = [os.urandom(size)]
        bodies.append(bodies[0] if same_bytes else os.urandom(size))
        start = threading.Barrier(2)
        answers: list[httpx.Response | None] = [None, None]

        def put(index: int, cal_id: str = cal_id, bodies=bodies, start=start, answers=answers):
            target = pair[index]
            with httpx.Client(
                base_url=target.base + "/", headers=_headers(target), timeout=TIMEOUT
            ) as client:
                start.wait(30)
                answers[index] = upload(client, cal_id, bodies[index])

        threads = [threading.Thread(target=put, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        statuses = [answer.status_code for answer in answers]
        assert sorted(statuses) == ([200, 201] if same_bytes else [201, 409]), statuses
        winner = bodies[statuses.index(201)]
        if not same_bytes:
            expect(answers[statuses.index(409)], 409, "conflict")
        # One object, and both processes serve it, with the catalog's ETag.
        assert s3_bucket.read(s3_bucket.key("hispec", cal_id)) == winner
        for archive in pair:
            response = archive.client("read").get(f"hispec/files/{cal_id}")
            assert response.content == winner
            assert response.headers["etag"] == f'"{md5_hex(winner)}"'
    assert s3_bucket.uploads() == []


def test_sigkill_of_one_process_mid_upload(pair, s3_bucket, start_s3_archive, postgres_url):
    first, second = pair
    acknowledged: dict[str, bytes] = {}
    for archive in pair:
        for size in (5000, LARGE):
            data = os.urandom(size)
            record = make_record(file_md5=md5_hex(data), file_size=len(data))
            assert upload(archive.client("write"), record["id"], data).status_code == 201
            assert archive.client("write").post("hispec/add", json=record).status_code == 200
            acknowledged[record["id"]] = data

    cut_id, cut = make_record()["id"], os.urandom(LARGE + 4 * 1024 * 1024)
    half_sent, killed = threading.Event(), threading.Event()

    def body():
        yield cut[:LARGE]  # more than a part: the multipart upload exists
        half_sent.set()
        killed.wait(60)
        yield cut[LARGE:]

    def send() -> None:
        headers = {**_headers(first), "X-File-MD5": md5_hex(cut)}
        try:
            httpx.put(
                f"{first.base}/hispec/files/{cut_id}",
                content=body(),
                headers=headers,
                timeout=TIMEOUT,
            )
        except httpx.HTTPError:
            pass  # the server died under the upload

    sender = threading.Thread(target=send)
    sender.start()
    assert half_sent.wait(60)
    assert wait_for(lambda: s3_bucket.uploads())  # the killed process had sent a part
    first.server.kill()
    killed.set()
    sender.join(60)

    # The other process serves everything acknowledged; the cut upload left nothing visible.
    reader = second.client("read")
    for cal_id, data in acknowledged.items():
        assert reader.get(f"hispec/files/{cal_id}").content == data
    expect(reader.get(f"hispec/files/{cut_id}"), 404)
    assert set(s3_bucket.objects()) == {s3_bucket.key("hispec", i) for i in acknowledged}
    assert len(reader.get("hispec/query").json()) == len(acknowledged)
    # The id is free; a restarted process removes the abandoned upload.
    assert upload(second.client("write"), cut_id, cut).status_code == 201
    start_s3_archive(
        db_url=postgres_url, root=first.root, extra_args=("--abandoned-upload-age", "0")
    )
    assert s3_bucket.uploads() == []

"""Files in S3-compatible object storage: uploads, downloads, Range, redirects, crashes."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile

import httpx
import pytest

from koa_middleware.archive.s3_storage import S3Location, parse_s3_url
from koa_middleware.archive.storage import open_storage
from koa_middleware.errors import ConfigurationError, InvalidRecordError
from support.archive import ArchiveServer, make_record, md5_hex, upload
from support.problems import expect
from support.s3 import wait_for

#: Bigger than one part (8 MiB), so that it goes through a multipart upload.
LARGE = 20 * 1024 * 1024 + 123


def test_files_of_every_size_are_stored_as_objects_and_served(start_s3_archive, s3_bucket):
    archive = start_s3_archive()
    client = archive.client("write")
    for size in (0, 1000, LARGE):
        data = os.urandom(size)
        cal_id = make_record()["id"]
        response = upload(client, cal_id, data)
        assert response.status_code == 201, response.text
        assert response.json() == {
            "id": cal_id,
            "file_md5": md5_hex(data),
            "file_size": size,
            "stored": True,
        }
        assert s3_bucket.read(s3_bucket.key("hispec", cal_id)) == data
        got = client.get(f"hispec/files/{cal_id}")
        assert got.status_code == 200
        assert got.content == data
        assert got.headers["etag"] == f'"{md5_hex(data)}"'
        assert got.headers["content-length"] == str(size)
    assert s3_bucket.uploads() == []


def test_range_requests_read_from_the_object(start_s3_archive):
    archive = start_s3_archive()
    client = archive.client("write")
    data = os.urandom(LARGE)
    cal_id = make_record()["id"]
    assert upload(client, cal_id, data).status_code == 201
    tail = client.get(f"hispec/files/{cal_id}", headers={"Range": "bytes=10000000-"})
    assert tail.status_code == 206
    assert tail.headers["content-range"] == f"bytes 10000000-{LARGE - 1}/{LARGE}"
    assert tail.content == data[10_000_000:]
    span = client.get(f"hispec/files/{cal_id}", headers={"Range": "bytes=5-14"})
    assert span.status_code == 206
    assert span.content == data[5:15]
    past = client.get(f"hispec/files/{cal_id}", headers={"Range": f"bytes={LARGE}-"})
    expect(past, 416)


def test_v1_download_zips_the_object(start_s3_archive):
    archive = start_s3_archive()
    client = archive.client("write")
    data = os.urandom(3 * 1024 * 1024)
    record = make_record(file_md5=md5_hex(data), file_size=len(data))
    assert upload(client, record["id"], data).status_code == 201
    assert client.post("hispec/add", json=record).status_code == 200
    response = client.get("hispec/download", params={"cal_id": record["id"]})
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as zipped:
        assert zipped.namelist() == [record["filename"]]
        assert zipped.read(record["filename"]) == data


def test_same_bytes_again_is_200_and_other_bytes_409(start_s3_archive, s3_bucket):
    archive = start_s3_archive()
    client = archive.client("write")
    data = os.urandom(LARGE)
    cal_id = make_record()["id"]
    assert upload(client, cal_id, data).status_code == 201
    again = upload(client, cal_id, data)
    assert again.status_code == 200
    assert again.json()["stored"] is False
    expect(upload(client, cal_id, data[:-1] + b"!"), 409, "conflict")
    assert s3_bucket.read(s3_bucket.key("hispec", cal_id)) == data
    assert s3_bucket.uploads() == []


@pytest.mark.parametrize("size", [1000, LARGE])
def test_a_wrong_md5_aborts_the_upload_and_leaves_nothing(start_s3_archive, s3_bucket, size):
    archive = start_s3_archive()
    client = archive.client("write")
    data = os.urandom(size)
    cal_id = make_record()["id"]
    response = client.put(
        f"hispec/files/{cal_id}", content=data, headers={"X-File-MD5": md5_hex(b"other")}
    )
    expect(response, 422, "checksum_mismatch")
    assert s3_bucket.objects() == {}
    assert s3_bucket.uploads() == []
    expect(client.get(f"hispec/files/{cal_id}"), 404)
    # The id is still free: the right bytes are accepted.
    assert upload(client, cal_id, data).status_code == 201


def test_a_file_its_record_disagrees_with_is_refused(start_s3_archive, s3_bucket):
    archive = start_s3_archive()
    client = archive.client("write")
    data = os.urandom(2000)
    record = make_record(file_md5=md5_hex(data), file_size=len(data))
    assert client.post("hispec/add", json=record).status_code == 200
    expect(upload(client, record["id"], b"not the recorded bytes"), 409, "conflict")
    assert s3_bucket.objects() == {}


def test_redirected_downloads_point_at_a_presigned_url(start_s3_archive):
    archive = start_s3_archive(extra_args=("--redirect-downloads", "--redirect-seconds", "120"))
    client = archive.client("write")
    data = os.urandom(LARGE)
    cal_id = make_record()["id"]
    assert upload(client, cal_id, data).status_code == 201

    response = client.get(f"hispec/files/{cal_id}")
    assert response.status_code == 307
    assert response.headers["etag"] == f'"{md5_hex(data)}"'
    location = response.headers["location"]
    assert not location.startswith(archive.base)
    # The presigned URL carries its own authority: no token is sent to the store.
    with httpx.Client(timeout=60) as store:
        whole = store.get(location)
        assert whole.status_code == 200
        assert hashlib.md5(whole.content).hexdigest() == md5_hex(data)
        resumed = store.get(location, headers={"Range": "bytes=1000-"})
        assert resumed.status_code == 206
        assert resumed.content == data[1000:]
    # Checks happen before the redirect: unknown ids and bad ranges are answered here.
    expect(client.get(f"hispec/files/{make_record()['id']}"), 404)
    expect(client.get(f"hispec/files/{cal_id}", headers={"Range": f"bytes={LARGE}-"}), 416)
    expect(archive.client(None).get(f"hispec/files/{cal_id}"), 401)


def test_redirects_need_object_storage(tmp_path):
    server = ArchiveServer(tmp_path / "archive", extra_args=("--redirect-downloads",))
    with pytest.raises(RuntimeError, match="needs --storage"):
        server.start()
    server.__exit__(None, None, None)


def test_an_unreachable_bucket_is_a_clear_error_at_start(tmp_path, s3_bucket):
    args = ("--storage", "s3://koa-no-such-bucket/x", "--s3-endpoint-url", s3_bucket.endpoint.url)
    server = ArchiveServer(tmp_path / "archive", extra_args=args)
    with pytest.raises(RuntimeError, match="Check that the bucket exists"):
        server.start()
    server.__exit__(None, None, None)


def test_abandoned_multipart_uploads_under_the_prefix_are_removed_at_start(
    start_s3_archive, s3_bucket
):
    client = s3_bucket.client
    ours = s3_bucket.key("hispec", make_record()["id"])
    for key in (ours, "elsewhere/hispec/file"):
        started = client.create_multipart_upload(Bucket=s3_bucket.name, Key=key)
        client.upload_part(
            Bucket=s3_bucket.name,
            Key=key,
            UploadId=started["UploadId"],
            PartNumber=1,
            Body=b"partial",
        )
    start_s3_archive()  # the default age (an hour) keeps both
    assert {u["Key"] for u in s3_bucket.uploads()} == {ours, "elsewhere/hispec/file"}
    start_s3_archive(extra_args=("--abandoned-upload-age", "0"))
    assert [u["Key"] for u in s3_bucket.uploads()] == ["elsewhere/hispec/file"]


@pytest.mark.slow
def test_sigkill_mid_upload_leaves_no_object_and_loses_nothing_acknowledged(
    start_s3_archive, s3_bucket
):
    archive = start_s3_archive()
    client = archive.client("write")
    kept = os.urandom(LARGE)
    kept_record = make_record(file_md5=md5_hex(kept), file_size=len(kept))
    assert upload(client, kept_record["id"], kept).status_code == 201
    assert client.post("hispec/add", json=kept_record).status_code == 200

    cut_id = make_record()["id"]
    cut = os.urandom(LARGE)
    half_sent, killed = threading.Event(), threading.Event()

    def body():
        yield cut[: 12 * 1024 * 1024]  # more than a part: the multipart upload exists
        half_sent.set()
        killed.wait(60)
        yield cut[12 * 1024 * 1024 :]

    def send() -> None:
        headers = {"Authorization": f"Bearer {archive.tokens['write']}", "X-File-MD5": md5_hex(cut)}
        try:
            httpx.put(
                f"{archive.base}/hispec/files/{cut_id}",
                content=body(),
                headers=headers,
                timeout=120,
            )
        except httpx.HTTPError:
            pass  # the server died under the upload

    sender = threading.Thread(target=send)
    sender.start()
    assert half_sent.wait(60)
    assert wait_for(lambda: s3_bucket.uploads())  # the archive has sent a part
    archive.server.kill()
    killed.set()
    sender.join(60)

    # Nothing of the cut upload is visible; the acknowledged file is untouched.
    assert s3_bucket.objects() == {s3_bucket.key("hispec", kept_record["id"]): len(kept)}
    restarted = start_s3_archive(extra_args=("--abandoned-upload-age", "0"), root=archive.root)
    assert s3_bucket.uploads() == []
    reader = restarted.client("read")
    expect(reader.get(f"hispec/files/{cut_id}"), 404)
    assert reader.get(f"hispec/files/{kept_record['id']}").content == kept
    assert (
        reader.get("hispec/query", params={"cal_id": kept_record["id"]}).json()["id"]
        == (kept_record["id"])
    )
    # The id was never taken: uploading it again works.
    assert upload(restarted.client("write"), cut_id, cut).status_code == 201


def test_storage_locations_are_checked():
    assert parse_s3_url("s3://calibrations/koa/archive") == S3Location(
        "calibrations", "koa/archive"
    )
    assert parse_s3_url("s3://calibrations") == S3Location("calibrations", "")
    for wrong in ("http://calibrations/koa", "s3:///koa", "s3://calibrations/a/../b", "/srv/koa"):
        with pytest.raises(ConfigurationError, match="s3://"):
            parse_s3_url(wrong)
    with pytest.raises(ConfigurationError, match="leave --storage out"):
        open_storage("/srv/koa/files", "/srv/koa")
    location = S3Location("calibrations", "koa")
    assert location.key("hispec", ID) == f"koa/hispec/{ID}"
    for instrument, cal_id in (("hispec", "../other"), ("../hispec", ID), ("hispec", "")):
        with pytest.raises(InvalidRecordError):
            location.key(instrument, cal_id)


ID = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"

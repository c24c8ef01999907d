"""The store against an archive on object storage that redirects downloads to the store.

A relay stands in front of the S3 endpoint and notes the head of every request
the object store receives, so the tests can see what reaches it: the presigned
URL, the ``Range`` of a resumed download, and never the archive's token.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.errors import ChecksumMismatchError
from support.archive import publish
from support.relay import Relay

SIZE = 3 << 20


@pytest.fixture
def redirecting(start_s3_archive, s3_endpoint, no_koa_environment, monkeypatch):
    """An archive on S3 that redirects downloads; the store's requests pass a relay."""
    monkeypatch.setenv("KOA_PROGRESS", "0")
    port = int(s3_endpoint.url.rsplit(":", 1)[1].split("/")[0])
    with Relay(port) as relay:
        archive = start_s3_archive(
            extra_args=("--s3-endpoint-url", relay.rewrite(s3_endpoint.url), "--redirect-downloads")
        )
        yield archive, relay


def store_heads(relay: Relay, key_part: str) -> list[str]:
    """The heads of the GET requests for an object, as the object store received them."""
    return [h for h in relay.heads if h.startswith("GET ") and key_part in h.split("\r\n")[0]]


def test_a_store_follows_the_redirect_and_never_sends_its_token_to_the_store(redirecting, tmp_path):
    archive, relay = redirecting
    data = os.urandom(SIZE)
    record = publish(archive.client("write"), data)
    token = archive.tokens["read"]
    with CalibrationStore("hispec", str(tmp_path / "cache"), url=archive.base, token=token) as s:
        path, got = s.get_calibration(record["id"])
    assert Path(path).read_bytes() == data and got["file_md5"] == hashlib.md5(data).hexdigest()
    [head] = store_heads(relay, record["id"])
    assert "x-amz-signature=" in head.split("\r\n")[0].lower()  # the presigned URL
    assert "authorization" not in head.lower()
    assert token not in head


def test_a_partial_download_resumes_with_range_against_the_store(redirecting, tmp_path):
    archive, relay = redirecting
    data = os.urandom(SIZE)
    record = publish(archive.client("write"), data)
    cache = tmp_path / "cache"
    with CalibrationStore(
        "hispec", str(cache), url=archive.base, token=archive.tokens["read"]
    ) as s:
        s.sync_records_from_remote()
        (s.layout.tmp_dir / f"{record['id']}.download").write_bytes(data[:1_000_000])
        path, _ = s.get_calibration(record["id"])
        assert Path(path).read_bytes() == data
    [head] = store_heads(relay, record["id"])
    assert "range: bytes=1000000-" in head.lower()


def test_bytes_from_the_store_are_checked_as_always(redirecting, tmp_path, s3_bucket):
    archive, _relay = redirecting
    data = os.urandom(SIZE)
    record = publish(archive.client("write"), data)
    # Someone rewrites the object behind the archive's back: the client must notice.
    s3_bucket.client.put_object(
        Bucket=s3_bucket.name, Key=s3_bucket.key("hispec", record["id"]), Body=os.urandom(SIZE)
    )
    with CalibrationStore(
        "hispec", str(tmp_path / "cache"), url=archive.base, token=archive.tokens["read"]
    ) as store:
        with pytest.raises(ChecksumMismatchError):
            store.get_calibration(record["id"])
        assert not store.layout.path_for(record["filename"]).exists()

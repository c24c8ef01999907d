"""S3-compatible object storage for tests: moto's server on 127.0.0.1, or MinIO.

By default a moto server (``moto.server.ThreadedMotoServer``) is started on
127.0.0.1 on a free port, once per test session, with throw-away
credentials. With ``KOA_TEST_S3_URL`` set (the endpoint of a MinIO or other
S3-compatible server, e.g. ``http://127.0.0.1:9000``), that server is used
instead, with the credentials of the standard ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` variables. Each test gets a bucket of its own,
emptied and removed afterwards.

The credentials and region are placed in ``os.environ`` for the session, so
that archive servers started as subprocesses inherit them.

Use from a ``conftest.py``::

    from support.s3 import s3_bucket, s3_endpoint  # noqa: F401  (fixtures)

    def test_x(s3_bucket):
        s3_bucket.url            # s3://koa-test-3f2a.../archive
        s3_bucket.server_args    # ("--storage", url, "--s3-endpoint-url", endpoint)
        s3_bucket.client         # a boto3 client on that endpoint

Examples
--------
>>> with s3_service() as endpoint:  # doctest: +SKIP
...     bucket = S3Bucket.create(endpoint)
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

logger = logging.getLogger(__name__)

__all__ = [
    "S3_URL_ENV",
    "S3Endpoint",
    "S3Bucket",
    "s3_service",
    "s3_endpoint",
    "s3_bucket",
    "wait_for",
]

S3_URL_ENV = "KOA_TEST_S3_URL"
#: The prefix under which archives keep their objects in tests.
PREFIX = "archive"
_MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "koa-test",
    "AWS_SECRET_ACCESS_KEY": "koa-test-secret",
}


@dataclass(frozen=True)
class S3Endpoint:
    """A running S3-compatible server: its URL and whether it is moto."""

    url: str
    is_moto: bool

    def client(self) -> Any:
        """A boto3 client on this endpoint (credentials from the environment)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
        )


@dataclass(frozen=True)
class S3Bucket:
    """A bucket of one test, with the archive's location in it."""

    endpoint: S3Endpoint
    name: str
    client: Any

    @property
    def url(self) -> str:
        """``s3://BUCKET/archive``: what ``--storage`` takes."""
        return f"s3://{self.name}/{PREFIX}"

    @property
    def server_args(self) -> tuple[str, ...]:
        """The ``koa-archive serve`` options that put its files here."""
        return ("--storage", self.url, "--s3-endpoint-url", self.endpoint.url)

    @classmethod
    def create(cls, endpoint: S3Endpoint) -> S3Bucket:
        """Create a bucket with a unique name."""
        client = endpoint.client()
        name = f"koa-test-{uuid.uuid4().hex[:20]}"
        client.create_bucket(Bucket=name)
        return cls(endpoint, name, client)

    def key(self, instrument: str, cal_id: str) -> str:
        """The object key of a file."""
        return f"{PREFIX}/{instrument}/{cal_id}"

    def objects(self) -> dict[str, int]:
        """Every visible object: key -> size."""
        found: dict[str, int] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name):
            found.update((item["Key"], item["Size"]) for item in page.get("Contents", []))
        return found

    def read(self, key: str) -> bytes:
        """The bytes of an object."""
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def uploads(self) -> list[dict]:
        """The incomplete multipart uploads."""
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.name)
        return [upload for page in pages for upload in page.get("Uploads", [])]

    def remove(self) -> None:
        """Abort the uploads, delete the objects, then the bucket."""
        for upload in self.uploads():
            self.client.abort_multipart_upload(
                Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for key in self.objects():
            self.client.delete_object(Bucket=self.name, Key=key)
        self.client.delete_bucket(Bucket=self.name)


@contextmanager
def s3_service() -> Iterator[S3Endpoint]:
    """Yield the endpoint of ``KOA_TEST_S3_URL``, or of a moto server started on 127.0.0.1.

    Sets the credentials and region in ``os.environ`` while it runs (moto only
    needs them to be present; MinIO uses the ones already set).
    """
    url = os.environ.get(S3_URL_ENV, "").strip()
    saved = {name: os.environ.get(name) for name in (*_MOTO_CREDENTIALS, "AWS_DEFAULT_REGION")}
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = None
    try:
        if url:
            missing = [name for name in _MOTO_CREDENTIALS if not os.environ.get(name)]
            if missing:
                pytest.fail(f"{S3_URL_ENV} is set but {', '.join(missing)} is not: set both.")
            yield S3Endpoint(url.rstrip("/"), is_moto=False)
            return
        from moto.server import ThreadedMotoServer

        # The server's request log (one line per request) says nothing a test needs.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        os.environ.update(_MOTO_CREDENTIALS)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield S3Endpoint(f"http://{host}:{port}", is_moto=True)
    finally:
        if server is not None:
            server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """The S3-compatible server of this test session."""
    with s3_service() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: S3Endpoint) -> Iterator[S3Bucket]:
    """An empty bucket for one test, removed afterwards."""
    bucket = S3Bucket.create(s3_endpoint)
    try:
        yield bucket
    finally:
        try:
            bucket.remove()
        except Exception as exc:  # a leftover bucket must not fail the test
            logger.warning("Could not remove bucket %s: %s", bucket.name, exc)


def wait_for(condition, timeout: float = 30.0):
    """Poll ``condition`` until it returns something true (returned) or ``timeout`` passes.

    For states of another process that nothing signals, e.g. a multipart upload
    appearing in the bucket. Returns None on timeout.
    """
    pause = threading.Event()
    for _ in range(int(timeout / 0.05)):
        result = condition()
        if result:
            return result
        pause.wait(0.05)
    return None

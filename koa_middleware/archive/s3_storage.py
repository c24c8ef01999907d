"""Calibration files in S3-compatible object storage (AWS S3, MinIO, Ceph, ...), through boto3.

Objects are named ``PREFIX/<instrument>/<id>`` in one bucket. The data model,
and what a crash leaves behind:

- An upload streams into a multipart upload at the object's final key,
  hashed (MD5) as the bytes arrive; at most a few parts are held in memory.
  Nothing is visible while it runs: S3 shows an object only once its
  multipart upload is completed.
- The upload is completed (:meth:`S3FileStorage.place`) only after the MD5
  and size were checked against the declaration, under the catalog's write
  lock, and with ``If-None-Match: *``, so an existing object is never
  replaced. On a mismatch, or any error, the upload is aborted.
- The catalog lists the file only after the object exists. A process killed
  between the two leaves a complete, verified object that the catalog does
  not list: it is not served, and the next upload of that id adopts it by its
  bytes (:func:`.uploads.adopt_file`).
- A process killed during an upload leaves an incomplete multipart upload
  (never visible); :meth:`S3FileStorage.clean_incoming` aborts those under
  the prefix that have not received a part for an hour, at start-up.
- Files smaller than one part are sent in one conditional ``PutObject`` when
  they are placed.

Examples
--------
>>> storage = S3FileStorage.from_url("s3://calibrations/koa")  # doctest: +SKIP
>>> storage.exists("hispec", "1b4e28ba-2fa1-4d2b-883f-0016d3cca427")  # doctest: +SKIP
False
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..records import validate_cal_id, validate_column_name
from .catalog import StoredFile
from .s3_objects import MD5_METADATA, S3ObjectReader, S3PendingFile, error_code, is_missing
from .storage_interface import FileStorage, PendingFile

logger = logging.getLogger(__name__)

__all__ = ["S3Location", "S3FileStorage", "parse_s3_url", "make_client"]

#: Bytes read from an object at a time.
READ_BLOCK = 1 << 20
#: Connections kept to the store (the server has up to 40 worker threads).
MAX_POOL_CONNECTIONS = 64


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix, from ``s3://BUCKET/PREFIX``."""

    bucket: str
    prefix: str

    def key(self, instrument: str, cal_id: str) -> str:
        """Return the object key of a file (names checked: no other key can be made)."""
        name = f"{validate_column_name(instrument)}/{validate_cal_id(cal_id)}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_url(url: str) -> S3Location:
    """Read ``s3://BUCKET/PREFIX`` (the prefix is optional).

    Parameters
    ----------
    url : str
        The storage URL.

    Returns
    -------
    S3Location

    Raises
    ------
    ConfigurationError
        If it is not an ``s3://`` URL with a bucket name.

    Examples
    --------
    >>> parse_s3_url("s3://calibrations/koa/archive")
    S3Location(bucket='calibrations', prefix='koa/archive')
    """
    parts = urlsplit(url)
    prefix = parts.path.strip("/")
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(
            f"{url!r} is not an object storage location: write s3://BUCKET/PREFIX, "
            "e.g. s3://calibrations/koa."
        )
    if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
        raise ConfigurationError(
            f"The prefix of {url!r} has an empty, '.' or '..' part; write s3://BUCKET/a/b."
        )
    return S3Location(parts.netloc, prefix)


class S3FileStorage(FileStorage):
    """Files as objects ``PREFIX/<instrument>/<id>`` in one bucket.

    Parameters
    ----------
    location : S3Location
        Bucket and prefix.
    client : botocore client
        An S3 client (thread-safe; shared by every request).
    """

    def __init__(self, location: S3Location, client: Any):
        self.location = location
        self.client = client

    def __repr__(self) -> str:
        return f"S3FileStorage({str(self.location)!r})"

    @classmethod
    def from_url(
        cls, url: str, endpoint_url: str | None = None, check: bool = True
    ) -> S3FileStorage:
        """Connect to ``s3://BUCKET/PREFIX`` with the standard AWS settings.

        Parameters
        ----------
        url : str
            ``s3://BUCKET/PREFIX``.
        endpoint_url : str | None
            The store's endpoint (MinIO, Ceph, ...); default ``AWS_ENDPOINT_URL_S3``,
            ``AWS_ENDPOINT_URL``, else AWS itself.
        check : bool
            Check now that the bucket can be reached.

        Returns
        -------
        S3FileStorage

        Raises
        ------
        ConfigurationError
            If boto3 is missing, the URL is wrong, or the bucket cannot be reached.

        Examples
        --------
        >>> S3FileStorage.from_url("s3://calibrations/koa", "http://127.0.0.1:9000")
        ...  # doctest: +SKIP
        """
        location = parse_s3_url(url)
        client = make_client(endpoint_url)
        storage = cls(location, client)
        if check:
            storage.check_bucket()
        return storage

    def check_bucket(self) -> None:
        """Check that the bucket exists and the credentials reach it.

        Raises
        ------
        ConfigurationError
            With the store's answer and what to check.
        """
        try:
            self.client.head_bucket(Bucket=self.location.bucket)
        except Exception as exc:
            endpoint = getattr(self.client.meta, "endpoint_url", "?")
            raise ConfigurationError(
                f"Cannot use bucket {self.location.bucket!r} at {endpoint}: {exc}. Check that "
                "the bucket exists, the endpoint (--s3-endpoint-url or AWS_ENDPOINT_URL_S3) and "
                "the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)."
            ) from None

    # -- FileStorage -------------------------------------------------------------------
    def begin(
        self, instrument: str, cal_id: str | None = None, md5: str | None = None
    ) -> S3PendingFile:
        """Start receiving the file of ``cal_id`` (nothing is visible until :meth:`place`)."""
        if cal_id is None:
            raise ValueError("S3 storage receives a file at its final key: pass cal_id.")
        key = self.location.key(instrument, cal_id)
        return S3PendingFile(self.client, self.location.bucket, key, md5)

    def place(self, pending: PendingFile, instrument: str, cal_id: str) -> bool:
        """Complete the upload, never replacing an object; False when one existed."""
        assert isinstance(pending, S3PendingFile)
        if pending.key != self.location.key(instrument, cal_id):
            raise ValueError(f"{pending.key} was begun for another file than {cal_id}")
        return pending.complete()

    def exists(self, instrument: str, cal_id: str) -> bool:
        """Return True when the object of ``cal_id`` exists."""
        return self.describe(instrument, cal_id, read=False) is not None

    def open(
        self, instrument: str, cal_id: str, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """Open bytes ``start`` to ``end`` of the object (FileNotFoundError when missing)."""
        key = self.location.key(instrument, cal_id)
        return S3ObjectReader(lambda first, last: self._get(key, first, last), start, end)  # type: ignore[return-value]

    def digest(self, instrument: str, cal_id: str) -> StoredFile:
        """Read the object through; return its MD5 and size."""
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        body = self._get(self.location.key(instrument, cal_id))
        try:
            while chunk := body.read(READ_BLOCK):
                md5.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        return StoredFile(md5.hexdigest(), size)

    def describe(self, instrument: str, cal_id: str, read: bool = True) -> StoredFile | None:
        """MD5 and size of the object as recorded when it was stored; None when absent.

        The MD5 is the one checked before the object was completed (kept as its
        metadata); an object stored without it is read through when ``read``.
        """
        key = self.location.key(instrument, cal_id)
        try:
            head = self.client.head_object(Bucket=self.location.bucket, Key=key)
        except Exception as exc:
            if is_missing(exc):
                return None
            raise
        md5 = (head.get("Metadata") or {}).get(MD5_METADATA, "")
        if not md5 and read:
            return self.digest(instrument, cal_id)
        return StoredFile(md5, int(head["ContentLength"]))

    def download_url(self, instrument: str, cal_id: str, seconds: int) -> str | None:
        """A presigned GET URL of the object, valid for ``seconds``."""
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.location.bucket, "Key": self.location.key(instrument, cal_id)},
            ExpiresIn=seconds,
        )

    def clean_incoming(self, max_age: float = 3600.0) -> int:
        """Abort multipart uploads under the prefix that got no part for ``max_age`` seconds.

        Returns
        -------
        int
            How many were aborted.
        """
        cutoff = time.time() - max_age
        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        removed = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                if self._last_activity(upload) >= cutoff:
                    continue
                try:
                    self.client.abort_multipart_upload(
                        Bucket=self.location.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
                except Exception as exc:
                    logger.warning("Could not abort upload %s: %s", upload["Key"], exc)
        if removed:
            logger.info("Aborted %d abandoned upload(s) under %s", removed, self.location)
        return removed

    def _last_activity(self, upload: dict[str, Any]) -> float:
        """When an upload last received a part (or began), in seconds since the epoch."""
        newest = upload["Initiated"]
        try:
            parts = self.client.list_parts(
                Bucket=self.location.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            ).get("Parts", [])
        except Exception as exc:
            if error_code(exc) == "NoSuchUpload":
                return time.time()  # finished meanwhile
            raise
        for part in parts:
            newest = max(newest, part["LastModified"])
        return _epoch(newest)

    def _get(self, key: str, start: int = 0, end: int | None = None) -> Any:
        """Start a GET of bytes ``start`` to ``end`` (exclusive) of ``key``; its body."""
        options: dict[str, Any] = {}
        if start or end is not None:
            options["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            answer = self.client.get_object(Bucket=self.location.bucket, Key=key, **options)
        except Exception as exc:
            if is_missing(exc):
                raise FileNotFoundError(f"No object {key} in {self.location.bucket}") from None
            raise
        return answer["Body"]


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def make_client(endpoint_url: str | None = None) -> Any:
    """An S3 client from the standard AWS settings, with a pool for concurrent requests.

    Parameters
    ----------
    endpoint_url : str | None
        The store's endpoint; None lets boto3 read ``AWS_ENDPOINT_URL_S3`` or
        ``AWS_ENDPOINT_URL`` (else AWS).

    Returns
    -------
    botocore client

    Raises
    ------
    ConfigurationError
        If boto3 is not installed.

    Examples
    --------
    >>> client = make_client("http://127.0.0.1:9000")  # doctest: +SKIP
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigurationError(
            "Object storage needs boto3: pip install 'koa_middleware[server]'."
        ) from None
    endpoint = (
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    session = boto3.session.Session()
    region = session.region_name or os.environ.get("AWS_REGION") or "us-east-1"
    config = Config(
        max_pool_connections=MAX_POOL_CONNECTIONS,
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=120,
        # A custom endpoint (MinIO, Ceph, ...) is reached by path: no DNS per bucket.
        s3={"addressing_style": "path" if endpoint else "auto"},
        signature_version="s3v4",
    )
    return session.client("s3", endpoint_url=endpoint or None, region_name=region, config=config)

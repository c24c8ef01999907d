"""The HTTP client of the calibration archive (PROTOCOL.md).

:class:`RemoteCalibrationDB` speaks v1 (the routes of the Keck calibrations
service) and, when ``GET BASE/healthz`` says so, v2 (the changes feed, raw file
downloads with ``Range``, uploads). One :class:`httpx.Client` per instance
reuses connections; every request has explicit timeouts. Idempotent requests
are retried with exponential backoff after connection errors, 429 and 5xx.

Every record that comes from the archive is checked with
:func:`koa_middleware.records.validate_record` before anyone sees it, so a
record with a traversal file name or a bad column name never reaches the cache.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from ..auth import Credentials, resolve_credentials
from ..errors import (
    ArchiveError,
    CalibrationNotFoundError,
    ChecksumMismatchError,
    ConfigurationError,
    InvalidRecordError,
    RemoteUnavailableError,
)
from ..hashing import file_digest
from ..records import (
    ARCHIVE_REQUIRED_FIELDS,
    BOOLEAN_COLUMNS,
    LOCAL_REQUIRED_FIELDS,
    SERVER_FIELDS,
    normalize_timestamp,
    normalize_version,
    safe_path,
    validate_cal_id,
    validate_column_name,
    validate_md5,
    validate_record,
)
from .archive_http import ArchiveSession, redact_url, server_message

logger = logging.getLogger(__name__)

__all__ = ["RemoteCalibrationDB", "DEFAULT_URL"]

#: The Keck calibrations service, used when neither ``url`` nor ``KOA_CALIBRATIONS_URL`` is set.
DEFAULT_URL = "https://www3.keck.hawaii.edu/api/calibrations"

_INSTRUMENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_TIMESTAMP_FILTERS = frozenset(
    {"date_time_start", "date_time_end", "last_updated_start", "last_updated_end"}
)
_VERSION_FILTERS = frozenset({"cal_version_min", "cal_version_max", "cal_version"})
_UPLOAD_CHUNK = 1 << 20


class RemoteCalibrationDB:
    """Client of one instrument's calibrations on the archive.

    Parameters
    ----------
    instrument_name : str
        The instrument (``'hispec'``, ``'liger'``, ...); lower-cased.
    url : str | None
        The archive's base URL; None reads ``KOA_CALIBRATIONS_URL``, else
        :data:`DEFAULT_URL`.
    token : str | None
        An archive API token. None reads ``KOA_API_TOKEN``, else the Keck
        observer login (``KECK_OBSERVER_EMAIL`` / ``KECK_OBSERVER_PASSWORD``),
        else requests are anonymous. See :mod:`koa_middleware.auth`.
    credentials : Credentials | None
        Ready-made credentials, instead of ``token``.
    timeout : float
        Seconds to wait for data on a connection (read, write, pool).
    connect_timeout : float
        Seconds to wait for a connection.
    retries : int
        How often an idempotent request is retried after a connection error,
        429 or 5xx (with exponential backoff starting at ``backoff`` seconds).
    backoff : float
        The first retry delay in seconds; it doubles with every retry.
    batch_size : int
        Records per ``add`` request.
    page_size : int
        Records per page when paging queries and the changes feed (v2).

    Examples
    --------
    >>> with RemoteCalibrationDB("hispec", url="http://127.0.0.1:8000") as remote:  # doctest: +SKIP
    ...     darks = remote.query(cal_type="dark")
    ...     path = remote.download_calibration_file(darks[0]["id"], "/tmp/cals")
    """

    def __init__(
        self,
        instrument_name: str,
        url: str | None = None,
        token: str | None = None,
        *,
        credentials: Credentials | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.5,
        batch_size: int = 1000,
        page_size: int = 3000,
    ):
        if not isinstance(instrument_name, str) or not _INSTRUMENT_RE.match(
            instrument_name.lower()
        ):
            raise ConfigurationError(
                f"Invalid instrument name {instrument_name!r}: use a plain name such as "
                "'hispec' (letters, digits, '_' or '-')."
            )
        self.instrument_name = instrument_name.lower()
        base = url or os.environ.get("KOA_CALIBRATIONS_URL") or DEFAULT_URL
        try:
            parsed = httpx.URL(base)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConfigurationError(
                f"Invalid archive URL {redact_url(str(base))!r}: use e.g. {DEFAULT_URL!r} "
                "(argument url= or KOA_CALIBRATIONS_URL)."
            ) from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigurationError(
                f"Invalid archive URL {redact_url(str(base))!r}: it must start with http:// "
                "or https:// and name a host (argument url= or KOA_CALIBRATIONS_URL)."
            )
        self.url = str(base).rstrip("/")
        #: The URL without any user name or password, for messages.
        self.display_url = redact_url(self.url)
        #: The HTTP layer: connection pool, credentials, retries.
        self.http = ArchiveSession(
            credentials or resolve_credentials(token),
            timeout=timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            backoff=backoff,
        )
        self.batch_size = max(1, int(batch_size))
        self.page_size = max(1, int(page_size))
        self._protocol: int | None = None
        self._protocol_lock = threading.Lock()

    # ------------------------------------------------------------------ basics

    def __repr__(self) -> str:
        return (
            f"RemoteCalibrationDB(instrument_name={self.instrument_name!r}, "
            f"url={self.display_url!r}, credentials={self.credentials.description!r})"
        )

    def __enter__(self) -> RemoteCalibrationDB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections to the archive."""
        self.http.close()

    @property
    def credentials(self) -> Credentials:
        """The credentials sent with every request (errors name their kind, never their value)."""
        return self.http.credentials

    @property
    def auth_client(self) -> Credentials:
        """The credentials, under the reference implementation's name."""
        return self.http.credentials

    @property
    def calibrations_url(self) -> str:
        """The archive's base URL, under the reference implementation's name."""
        return self.url

    @staticmethod
    def _credentials_available() -> bool:
        """Whether credentials are configured: ``KOA_API_TOKEN``, or both
        ``KECK_OBSERVER_EMAIL`` and ``KECK_OBSERVER_PASSWORD``."""
        env = os.environ
        keck = env.get("KECK_OBSERVER_EMAIL") and env.get("KECK_OBSERVER_PASSWORD")
        return bool(env.get("KOA_API_TOKEN") or keck)

    @property
    def retries(self) -> int:
        """Retries of an idempotent request (and of a broken download) before giving up."""
        return self.http.retries

    @retries.setter
    def retries(self, value: int) -> None:
        self.http.retries = max(0, int(value))

    @property
    def backoff(self) -> float:
        """The first retry delay in seconds; it doubles with every retry."""
        return self.http.backoff

    @backoff.setter
    def backoff(self, value: float) -> None:
        self.http.backoff = max(0.0, float(value))

    @property
    def instrument_url(self) -> str:
        """``BASE/INST``: the root of this instrument's routes."""
        return f"{self.url}/{self.instrument_name}"

    @property
    def protocol(self) -> int:
        """The protocol the archive speaks: 2 when ``GET BASE/healthz`` says so, else 1.

        Detected on first use and remembered.

        Raises
        ------
        RemoteUnavailableError
            If the archive cannot be reached.
        """
        if self._protocol is None:
            with self._protocol_lock:
                if self._protocol is None:
                    self._protocol = self._detect_protocol()
        return self._protocol

    def _detect_protocol(self) -> int:
        response = self.http.send("GET", f"{self.url}/healthz", idempotent=True)
        if response.status_code == 404:
            logger.info("The archive at %s has no /healthz: protocol 1.", self.display_url)
            return 1
        if response.status_code >= 500:
            self.http.raise_for_status(response, "check the archive's health")
        protocol = 1
        if response.is_success:
            try:
                data = json.loads(response.content)
            except ValueError:
                data = None
            if isinstance(data, Mapping):
                value = data.get("protocol")
                if isinstance(value, int) and not isinstance(value, bool) and value >= 2:
                    protocol = 2
        logger.info("The archive at %s speaks protocol %d.", self.display_url, protocol)
        return protocol

    def reachable(self) -> bool:
        """Whether the archive answers now: one attempt, no retries.

        Detects the protocol on the way, so a store can tell at once, when it
        starts, that it has to work from its cache.
        """
        try:
            with self.http.limited_retries(0):
                self.protocol  # noqa: B018 - detecting it is the probe
        except RemoteUnavailableError:
            return False
        return True

    def healthz(self) -> dict:
        """Return the archive's health answer (v2), e.g. ``{"status": "ok", "protocol": 2}``.

        Raises
        ------
        ArchiveError
            If the archive has no health route (v1) or answers with an error.
        RemoteUnavailableError
            If the archive cannot be reached.
        """
        response = self.http.send("GET", f"{self.url}/healthz", idempotent=True)
        data = self.http.json(response, "check the archive's health")
        if not isinstance(data, dict):
            raise self.http.shape_error(response, "a JSON object")
        return data

    # --------------------------------------------------------------- transport

    def _require_v2(self, what: str) -> None:
        if self.protocol < 2:
            raise ArchiveError(
                f"The archive at {self.display_url} speaks protocol 1, which has no {what}; "
                "this needs an archive that speaks protocol 2 (koa-archive).",
                url=self.display_url,
            )

    # ----------------------------------------------------------------- records

    def _record(self, raw: Any, response: httpx.Response, required: Iterable[str]) -> dict:
        """Validate one record from the archive; refuse it with a clear error when it is bad."""
        try:
            return validate_record(raw, required=required, drop=("seq",))
        except InvalidRecordError as exc:
            ident = raw.get("id") if isinstance(raw, Mapping) else None
            display = redact_url(str(response.request.url))
            raise InvalidRecordError(
                f"The archive at {display} sent an invalid record (id {ident!r}): {exc} "
                "Nothing from this answer was stored; report the record to the archive "
                "operators."
            ) from exc

    def _records(self, data: Any, response: httpx.Response, required: Iterable[str]) -> list:
        required = tuple(required)
        return [self._record(raw, response, required) for raw in data]

    @staticmethod
    def _no_match(data: Any) -> bool:
        return isinstance(data, Mapping) and "id" not in data and "message" in data

    def _query_params(self, filters: Mapping[str, Any]) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in filters.items():
            if value is None:
                continue
            validate_column_name(key)
            if key == "cal_id":
                value = validate_cal_id(value)
            elif key in _TIMESTAMP_FILTERS:
                value = normalize_timestamp(value, key)
            elif key in _VERSION_FILTERS:
                value = normalize_version(value)
            elif isinstance(value, bool):
                value = int(value)
            elif not isinstance(value, str | int | float):
                raise InvalidRecordError(
                    f"Invalid query value for {key!r}: {type(value).__name__}; use a string "
                    "or a number."
                )
            params[key] = str(value)
        return params

    def query(
        self,
        *,
        fetch: str = "all",
        columns: str | Iterable[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        order_by: str | None = None,
        **filters: Any,
    ) -> list[dict] | dict | None:
        """Query the archive's records (``GET BASE/INST/query``).

        Parameters
        ----------
        fetch : {'all', 'first'}
            ``'all'`` returns a list; ``'first'`` one record or None.
        columns : str | Iterable[str] | None
            Only these columns in each record (e.g. ``'id,last_updated'``);
            asked of the server on v2, cut out here on v1.
        limit, offset : int | None
            Page the answer (v2 on the server; v1 sliced here).
        order_by : str | None
            Only ``'last_updated'`` (the archive's order) is accepted.
        **filters
            ``cal_id``, ``filename``, ``cal_type``, ``origin``,
            ``date_time_start`` / ``date_time_end``, ``last_updated_start``
            (strictly after) / ``last_updated_end``, ``cal_version_min`` /
            ``cal_version_max``, or any other column for equality.

        Returns
        -------
        list[dict] | dict
            With ``fetch='all'`` (and no ``cal_id``): the records, ordered by
            ``last_updated`` then ``id``. With ``cal_id`` or ``fetch='first'``:
            the one record. When nothing matches, an empty list (as the
            reference implementation answers).

        Raises
        ------
        InvalidRecordError
            If a filter name or value is invalid, or the archive sends an invalid
            record (e.g. a file name with a path in it).
        AuthenticationError, RemoteUnavailableError, ArchiveError
            As for every request.

        Examples
        --------
        >>> remote.query(cal_type="dark", date_time_start="2026-01-01")  # doctest: +SKIP
        [{'id': '...', 'filename': 'hispec_dark_001.fits', ...}]
        """
        if fetch not in ("all", "first"):
            raise ConfigurationError(f"Invalid fetch {fetch!r}: use 'all' or 'first'.")
        if order_by not in (None, "last_updated"):
            raise ConfigurationError(
                f"Invalid order_by {order_by!r} for the archive: it always orders by "
                "last_updated; sort the returned list yourself."
            )
        wanted = self._columns(columns)
        single = fetch == "first" or filters.get("cal_id") is not None
        params = self._query_params(filters)
        if fetch == "first":
            params["fetch"] = "first"
        v2 = self.protocol >= 2
        if v2:
            if wanted:
                params["columns"] = ",".join(wanted)
            if limit is not None:
                params["limit"] = str(int(limit))
            if offset is not None:
                params["offset"] = str(int(offset))
        response = self.http.send(
            "GET", f"{self.instrument_url}/query", params=params, idempotent=True
        )
        data = self.http.json(response, "query calibrations")
        required = () if wanted else LOCAL_REQUIRED_FIELDS
        if self._no_match(data):
            records: list[dict] = []
        elif isinstance(data, list):
            records = self._records(data, response, required)
        elif isinstance(data, Mapping) and "id" in data:
            records = [self._record(data, response, required)]
        else:
            raise self.http.shape_error(response, "a JSON array of records")
        if not v2:
            if wanted:
                records = [{key: rec.get(key) for key in wanted} for rec in records]
            start = int(offset or 0)
            records = records[start : None if limit is None else start + int(limit)]
        if single and records:
            return records[0]
        return records

    @staticmethod
    def _columns(columns: str | Iterable[str] | None) -> list[str] | None:
        if columns is None:
            return None
        names = columns.split(",") if isinstance(columns, str) else list(columns)
        names = [validate_column_name(name.strip()) for name in names if name.strip()]
        if "id" not in names:
            names.insert(0, "id")
        return names

    def iter_query(
        self, *, columns: str | Iterable[str] | None = None, **filters: Any
    ) -> Iterator[list[dict]]:
        """Yield the records of a query page by page (``page_size`` per page on v2).

        On v1 the whole answer comes as one page.

        Examples
        --------
        >>> for page in remote.iter_query(columns="id,last_updated"):  # doctest: +SKIP
        ...     ids.update(rec["id"] for rec in page)
        """
        if self.protocol < 2:
            yield self.query(columns=columns, **filters)
            return
        offset = 0
        while True:
            page = self.query(columns=columns, limit=self.page_size, offset=offset, **filters)
            if page:
                yield page
            if len(page) < self.page_size:
                return
            offset += len(page)

    def get_last_updated(self) -> str | None:
        """Return the newest ``last_updated`` of the instrument's records, or None.

        Returns
        -------
        str | None
            ``YYYY-MM-DDTHH:MM:SS.sss`` (UTC), or None when the archive holds no record.

        Examples
        --------
        >>> remote.get_last_updated()  # doctest: +SKIP
        '2026-02-12T03:04:05.000'
        """
        response = self.http.send("GET", f"{self.instrument_url}/lastUpdated", idempotent=True)
        data = self.http.json(response, "report when calibrations were last updated")
        if not isinstance(data, Mapping) or "last_updated" not in data:
            raise self.http.shape_error(response, '{"last_updated": ...}')
        value = data["last_updated"]
        if value is None:
            return None
        try:
            return normalize_timestamp(value, "last_updated")
        except InvalidRecordError as exc:
            raise ArchiveError(
                f"The archive at {self.display_url} sent an invalid last_updated {value!r}.",
                url=self.display_url,
                status=response.status_code,
            ) from exc

    def changes(self, since: int = 0, limit: int = 1000, *, validate: bool = True) -> dict:
        """Return the records changed after ``since`` (v2 changes feed).

        Parameters
        ----------
        since : int
            The ``next`` of the previous call (0 for everything).
        limit : int
            At most this many records (the archive caps it at 10000).
        validate : bool
            Check and normalize every record (the default). False hands the
            records over as the archive sent them (without ``seq``), for a caller
            that checks every record itself before using it, as
            ``LocalCalibrationDB.add`` does; it saves checking each record twice.

        Returns
        -------
        dict
            ``{"records": [...], "next": int, "more": bool}``; keep ``next`` and
            ask again while ``more`` is true.

        Raises
        ------
        ArchiveError
            If the archive speaks only protocol 1.

        Examples
        --------
        >>> page = remote.changes(since=0, limit=1000)  # doctest: +SKIP
        >>> page["next"], page["more"]  # doctest: +SKIP
        (1000, True)
        """
        self._require_v2("changes feed")
        since = int(since)
        params = {"since": str(since), "limit": str(int(limit))}
        response = self.http.send(
            "GET", f"{self.instrument_url}/changes", params=params, idempotent=True
        )
        data = self.http.json(response, "list changed calibrations")
        if (
            not isinstance(data, Mapping)
            or not isinstance(data.get("records"), list)
            or not isinstance(data.get("next"), int)
            or isinstance(data.get("next"), bool)
            or data["next"] < since
        ):
            raise self.http.shape_error(response, '{"records": [...], "next": <seq>, "more": ...}')
        if validate:
            records = self._records(data["records"], response, LOCAL_REQUIRED_FIELDS)
        else:
            records = data["records"]
            for record in records:
                if not isinstance(record, dict):
                    raise self.http.shape_error(response, "records that are JSON objects")
                record.pop("seq", None)
        return {"records": records, "next": data["next"], "more": bool(data.get("more"))}

    def add(self, records: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> dict:
        """Add or update records on the archive (``POST BASE/INST/add``), in batches.

        Each batch is all or nothing on the archive. Server-set fields
        (``last_updated``, ``seq``) are not sent. Upload a record's file with
        :meth:`upload_calibration_file` before adding the record.

        Parameters
        ----------
        records : dict | Iterable[dict]
            One record or many.

        Returns
        -------
        dict
            ``{"added": N, "ids": [...]}`` over all batches.

        Raises
        ------
        InvalidRecordError
            If a record breaks the record rules (checked before anything is sent).
        AuthenticationError
            401, or 403 for a credential without the 'write' scope.
        ArchiveError
            If the archive refuses a batch (e.g. 409: a record's file_md5
            disagrees with the stored file).

        Examples
        --------
        >>> remote.add([record])  # doctest: +SKIP
        {'added': 1, 'ids': ['...']}
        """
        if isinstance(records, Mapping):
            records = [records]
        clean = [
            _wire_booleans(
                validate_record(rec, required=ARCHIVE_REQUIRED_FIELDS, drop=SERVER_FIELDS)
            )
            for rec in records
        ]
        added = 0
        ids: list[str] = []
        for start in range(0, len(clean), self.batch_size):
            batch = clean[start : start + self.batch_size]
            response = self.http.send(
                "POST", f"{self.instrument_url}/add", json_body=batch, idempotent=False
            )
            data = self.http.json(response, "add calibration records")
            if not isinstance(data, Mapping):
                raise self.http.shape_error(response, '{"added": N, "ids": [...]}')
            added += int(data.get("added", len(batch)))
            ids.extend(str(i) for i in data.get("ids") or [rec["id"] for rec in batch])
        if clean:
            logger.info("Added %d record(s) to the archive at %s.", added, self.display_url)
        return {"added": added, "ids": ids}

    # ------------------------------------------------------------------- files

    @contextlib.contextmanager
    def open_file_stream(
        self, cal_id: str, headers: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """Open the raw file download of ``cal_id`` (v2 ``GET BASE/INST/files/ID``).

        Yields the streamed answer (200, 206 or 416; other statuses raise).
        :mod:`koa_middleware.transfer` reads it with resume and verification.
        """
        cal_id = validate_cal_id(cal_id)
        response = self.http.send(
            "GET",
            f"{self.instrument_url}/files/{cal_id}",
            headers=headers,
            idempotent=True,
            stream=True,
        )
        try:
            if response.status_code not in (200, 206, 416):
                response.read()
                self.http.raise_for_status(response, f"send the file of calibration {cal_id}")
            yield response
        finally:
            response.close()

    @contextlib.contextmanager
    def open_zip_stream(self, cal_id: str) -> Iterator[httpx.Response]:
        """Open the v1 zip download of ``cal_id`` (``GET BASE/INST/download?cal_id=ID``)."""
        cal_id = validate_cal_id(cal_id)
        response = self.http.send(
            "GET",
            f"{self.instrument_url}/download",
            params={"cal_id": cal_id},
            idempotent=True,
            stream=True,
        )
        try:
            if response.status_code != 200:
                response.read()
                self.http.raise_for_status(response, f"send the file of calibration {cal_id}")
            yield response
        finally:
            response.close()

    def download_calibration_file(
        self,
        cal_id: str,
        output_dir: str | os.PathLike,
        output_path: str | os.PathLike | None = None,
        *,
        record: Mapping[str, Any] | None = None,
        progress: bool | None = None,
    ) -> str:
        """Download the file of calibration ``cal_id``, verified, into ``output_dir``.

        The file appears atomically under its record's ``filename`` (or at
        ``output_path``) only after its size and MD5 matched the record. A
        download that breaks off leaves a hidden ``.<id>.download`` next to it,
        which the next call resumes (v2).

        Parameters
        ----------
        cal_id : str
            The calibration id.
        output_dir : str | PathLike
            The folder to write into (created if needed).
        output_path : str | PathLike | None
            Where to write instead of ``output_dir/<filename>``.
        record : dict | None
            The calibration's record, when the caller has it (saves a query).
        progress : bool | None
            Show a progress bar (only ever on a terminal; see
            :func:`koa_middleware.transfer.progress_enabled`).

        Returns
        -------
        str
            The absolute path of the file.

        Raises
        ------
        CalibrationNotFoundError
            If the archive has no such record.
        ChecksumMismatchError
            If the bytes do not match the record's ``file_size`` / ``file_md5``;
            nothing is left behind.
        InvalidRecordError
            If the record's file name is not a plain name.
        ArchiveError, RemoteUnavailableError, AuthenticationError
            As for every request.

        Examples
        --------
        >>> remote.download_calibration_file(cal_id, "/tmp/cals")  # doctest: +SKIP
        '/tmp/cals/hispec_dark_001.fits'
        """
        from ..transfer import download_record_file

        cal_id = validate_cal_id(cal_id)
        if record is None:
            record = self.query(cal_id=cal_id)
            if not record:
                raise CalibrationNotFoundError(
                    f"The archive at {self.display_url} has no calibration {cal_id}."
                )
        else:
            record = validate_record(record)
        output_dir = Path(output_dir).expanduser().absolute()
        if output_path is None:
            destination = safe_path(output_dir, record["filename"])
        else:
            destination = Path(output_path).expanduser().absolute()
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.parent / f".{cal_id}.download"
        download_record_file(self, record, destination, partial=partial, progress=progress)
        return str(destination)

    def upload_calibration_file(
        self, cal_id: str, path: str | os.PathLike, md5: str | None = None
    ) -> int:
        """Upload a calibration's file to the archive (v2 ``PUT BASE/INST/files/ID``).

        The archive checks the length and MD5 before it makes the file visible.

        Parameters
        ----------
        cal_id : str
            The calibration id.
        path : str | PathLike
            The local file.
        md5 : str | None
            Its MD5 (the record's ``file_md5``); computed from the file when None.
            The file is always hashed, and a disagreement is refused here.

        Returns
        -------
        int
            201 when stored, 200 when the same bytes were already there.

        Raises
        ------
        ChecksumMismatchError
            If the file does not match ``md5``, or the archive found a mismatch (422).
        ArchiveError
            409 when different bytes are already stored for this id, or if the
            archive speaks only protocol 1.
        AuthenticationError
            401, or 403 for a token without the 'write' scope.

        Examples
        --------
        >>> remote.upload_calibration_file(record["id"], path, record["file_md5"])  # doctest: +SKIP
        201
        """
        self._require_v2("file upload")
        cal_id = validate_cal_id(cal_id)
        path = Path(path)
        actual_md5, size = file_digest(path)
        if md5 is not None and validate_md5(md5) != actual_md5:
            raise ChecksumMismatchError(
                f"{path.name} has MD5 {actual_md5} but its record says {md5}; the local file "
                "changed after it was registered: register it again before pushing."
            )

        def body() -> Iterator[bytes]:
            with open(path, "rb") as handle:
                while chunk := handle.read(_UPLOAD_CHUNK):
                    yield chunk

        response = self.http.send(
            "PUT",
            f"{self.instrument_url}/files/{cal_id}",
            content=body,
            headers={"X-File-MD5": actual_md5, "Content-Length": str(size)},
            idempotent=True,
        )
        status = response.status_code
        if status == 422:
            raise ChecksumMismatchError(
                f"The archive at {self.display_url} found that the upload of {path.name} "
                f"does not match MD5 {actual_md5} and size {size} ({server_message(response)}); "
                "nothing was stored. Try again."
            )
        if status == 409:
            raise ArchiveError(
                f"The archive at {self.display_url} already holds different bytes for "
                f"calibration {cal_id} (409); a calibration's file never changes: register "
                "the new file as a new calibration (new id or version).",
                url=self.display_url,
                status=status,
            )
        self.http.raise_for_status(response, f"store the file of calibration {cal_id}")
        return status


def _wire_booleans(record: dict) -> dict:
    """Boolean columns go as JSON ``true``/``false``, as the Keck service stores them."""
    for column in BOOLEAN_COLUMNS:
        if record.get(column) is not None:
            record[column] = bool(record[column])
    return record

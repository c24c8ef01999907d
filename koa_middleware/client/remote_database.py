"""The HTTP client of the calibration archive (PROTOCOL.md).

:class:`RemoteCalibrationDB` speaks v1 (the routes of the Keck calibrations
service) and, when ``GET BASE/healthz`` says so, v2 (the changes feed, raw file
downloads with ``Range``, uploads). One :class:`httpx.Client` per instance
reuses connections; every request has explicit timeouts. Idempotent requests
are retried with exponential backoff after connection errors, 429 and 5xx.

Every record that comes from the archive is checked with
:func:`koa_middleware.records.validate_record` before anyone sees it, so a
record with a traversal file name or a bad column name never reaches the cache.
Every answer is bounded (``max_answer_bytes``, counted decompressed), and
query answers are parsed record by record as they arrive
(:mod:`koa_middleware.client.json_stream`). Adding records and file
transfers live in :mod:`koa_middleware.client.remote_transfer`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx
from tqdm import tqdm  # noqa: F401  (a name the reference's module carries)

from ..config import DEFAULT, DEFAULT_URL, ArchiveCredential, Default, given
from ..errors import (
    ArchiveError,
    ConfigurationError,
    InvalidRecordError,
    RemoteUnavailableError,
)
from ..records import (
    LOCAL_REQUIRED_FIELDS,
    normalize_timestamp,
    normalize_version,
    validate_cal_id,
    validate_column_name,
    validate_record,
)
from .auth import Credentials, credentials_for, resolve_credentials
from .http import DEFAULT_MAX_ANSWER_BYTES, ArchiveSession, redact_url
from .keck_client import KeckObserverAuthClient  # noqa: F401  (the reference's name here)
from .remote_feed import RemoteFeed
from .remote_transfer import RemoteTransfers

logger = logging.getLogger(__name__)

# DEFAULT_URL is defined in koa_middleware.config; it is re-exported here, where the
# reference implementation's callers look for it.
__all__ = ["RemoteCalibrationDB", "DEFAULT_URL"]

_INSTRUMENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
_TIMESTAMP_FILTERS = frozenset(
    {"date_time_start", "date_time_end", "last_updated_start", "last_updated_end"}
)
_VERSION_FILTERS = frozenset({"cal_version_min", "cal_version_max", "cal_version"})


def _base_url(url: str | None | Default) -> str:
    """The archive URL: ``url``, else ``KOA_CALIBRATIONS_URL``, else :data:`DEFAULT_URL`."""
    if given(url) and url:
        return url
    return os.environ.get("KOA_CALIBRATIONS_URL") or DEFAULT_URL


def _credentials(
    credentials: ArchiveCredential | Credentials | None | Default, token: str | None | Default
) -> Credentials:
    """The credentials to send: those given, else resolved from ``token`` and the environment.

    Raises
    ------
    ConfigurationError
        If both a token and credentials are given.
    """
    if not given(credentials):
        return resolve_credentials(token)
    if given(token) and token:
        raise ConfigurationError(
            "Both token= and credentials= were given to RemoteCalibrationDB: pass only one "
            "(credentials= already says which credential to send)."
        )
    if isinstance(credentials, ArchiveCredential):
        return credentials_for(credentials)
    return credentials


class RemoteCalibrationDB(RemoteFeed, RemoteTransfers):
    """Client of one instrument's calibrations on the archive.

    Parameters
    ----------
    instrument_name : str
        The instrument (``'hispec'``, ``'liger'``, ...); lower-cased.
    url : str | None | Default
        The archive's base URL. :data:`~koa_middleware.config.DEFAULT` reads
        ``KOA_CALIBRATIONS_URL``, else :data:`~koa_middleware.config.DEFAULT_URL`;
        None (or ``''``) does the same, as in the reference implementation.
    token : str | None | Default
        An archive API token. :data:`~koa_middleware.config.DEFAULT` reads
        ``KOA_API_TOKEN``, else the Keck observer login (``KECK_OBSERVER_EMAIL`` /
        ``KECK_OBSERVER_PASSWORD``), else requests are anonymous; None (or
        ``''``) does the same, as in the reference implementation. See
        :mod:`koa_middleware.client.auth`.
    credentials : ArchiveCredential | Credentials | Default
        Instead of ``token``: a credential resolved already (a store's
        ``config.credential``, :func:`koa_middleware.config.resolve_credential`),
        or ready-made credentials (:class:`~koa_middleware.client.auth.BearerToken`,
        ...). Nothing is then read from the environment for it, and errors name
        where it came from. :data:`~koa_middleware.config.DEFAULT` (or None):
        resolve it from ``token`` and the environment.
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
    max_answer_bytes : int
        The most bytes of one answer the client reads, counted after
        decompression (default 256 MiB); a larger answer raises
        :class:`~koa_middleware.errors.ArchiveError` and nothing from it is used.

    Examples
    --------
    >>> with RemoteCalibrationDB("hispec", url="http://127.0.0.1:8000") as remote:  # doctest: +SKIP
    ...     darks = remote.query(cal_type="dark")
    ...     path = remote.download_calibration_file(darks[0]["id"], "/tmp/cals")
    """

    def __init__(
        self,
        instrument_name: str,
        url: str | None | Default = DEFAULT,
        token: str | None | Default = DEFAULT,
        *,
        credentials: ArchiveCredential | Credentials | None | Default = DEFAULT,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.5,
        batch_size: int = 1000,
        page_size: int = 3000,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ):
        if not isinstance(instrument_name, str) or not _INSTRUMENT_RE.match(
            instrument_name.lower()
        ):
            raise ConfigurationError(
                f"Invalid instrument name {instrument_name!r}: use a plain name such as "
                "'hispec' (letters, digits, '_' or '-')."
            )
        self.instrument_name = instrument_name.lower()
        base = _base_url(url)
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
            _credentials(credentials, token),
            timeout=timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            backoff=backoff,
            max_answer_bytes=max_answer_bytes,
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
    def max_answer_bytes(self) -> int:
        """The most bytes of one answer that are read (decompressed)."""
        return self.http.max_answer_bytes

    @max_answer_bytes.setter
    def max_answer_bytes(self, value: int) -> None:
        self.http.max_answer_bytes = max(1, int(value))

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

    def _record(self, raw: Any, source: httpx.Response | str, required: Iterable[str]) -> dict:
        """Validate one record from the archive; refuse it with a clear error when it is bad.

        ``source`` is the answer the record came from, or its URL.
        """
        try:
            return validate_record(raw, required=required, drop=("seq",))
        except InvalidRecordError as exc:
            ident = raw.get("id") if isinstance(raw, Mapping) else None
            url = source if isinstance(source, str) else str(source.request.url)
            display = redact_url(url)
            raise InvalidRecordError(
                f"The archive at {display} sent an invalid record (id {ident!r}): {exc} "
                "Nothing from this answer was stored; report the record to the archive "
                "operators."
            ) from exc

    def check_record(self, raw: Any, required: Iterable[str] = LOCAL_REQUIRED_FIELDS) -> dict:
        """Check a record this archive sent unchecked (:meth:`iter_records`, :meth:`fetch_raw`).

        Parameters
        ----------
        raw : Any
            The record as the archive sent it.
        required : Iterable[str]
            The fields it must have (by default those the local database needs).

        Returns
        -------
        dict
            The record, validated and normalized, without ``seq``.

        Raises
        ------
        InvalidRecordError
            If the record breaks the record rules; the message names the archive.

        Examples
        --------
        >>> remote.check_record(next(remote.iter_records()))["filename"]  # doctest: +SKIP
        'hispec_dark_001.fits'
        """
        return self._record(raw, self.display_url, required)

    def _records(self, data: Any, response: httpx.Response, required: Iterable[str]) -> list:
        required = tuple(required)
        return [self._record(raw, response, required) for raw in data]

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
        include_retracted: bool | None = None,
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
        include_retracted : bool | None
            Also return calibrations retracted on the archive, every record
            with ``published_at``, ``retracted_at`` and ``retract_reason``
            (null while live). None (the default) includes them when asking
            for one ``cal_id``, so that a client learns of a retraction; a v1
            archive never returns retracted calibrations.
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
            if include_retracted is None:
                include_retracted = filters.get("cal_id") is not None
            if include_retracted:
                params["include_retracted"] = "1"
            if wanted:
                params["columns"] = ",".join(wanted)
            if limit is not None:
                params["limit"] = str(int(limit))
            if offset is not None:
                params["offset"] = str(int(offset))
        required = () if wanted else LOCAL_REQUIRED_FIELDS
        url = str(httpx.URL(f"{self.instrument_url}/query", params=params))
        records = [self._record(raw, url, required) for raw in self._stream_query(params)]
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
        self,
        *,
        columns: str | Iterable[str] | None = None,
        include_retracted: bool = True,
        **filters: Any,
    ) -> Iterator[list[dict]]:
        """Yield the records of a query page by page (``page_size`` per page on v2).

        On v1 the whole answer comes as one page. Made for comparing the
        archive with a cache, so by default (``include_retracted=True``) a v2
        archive's retracted records are in it too, with their lifecycle fields
        (see :meth:`query`).

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
            page = self.query(
                columns=columns,
                limit=self.page_size,
                offset=offset,
                include_retracted=include_retracted,
                **filters,
            )
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

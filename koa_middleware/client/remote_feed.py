"""Reading many records from the archive: streamed queries and the changes feed.

:class:`RemoteFeed` is the part of
:class:`~koa_middleware.client.remote_database.RemoteCalibrationDB` that reads
records in bulk for sync: query answers parsed record by record as they arrive
(the whole JSON array of a v1 archive never has to be held as text), paging on
v2, a cheap count probe, and the v2 changes feed, whose cursor must move.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import ArchiveError
from ..records import LOCAL_REQUIRED_FIELDS
from .http import redact_url

if TYPE_CHECKING:
    from .http import ArchiveSession

logger = logging.getLogger(__name__)

__all__ = ["RemoteFeed"]


class RemoteFeed:
    """Streamed queries, a count probe and the changes feed (a part of ``RemoteCalibrationDB``)."""

    http: ArchiveSession
    instrument_url: str
    page_size: int

    if TYPE_CHECKING:
        retries: int
        protocol: int

        def _require_v2(self, what: str) -> None: ...

        def _records(self, data: Any, response: httpx.Response, required: Any) -> list: ...

        def _query_params(self, filters: Mapping[str, Any]) -> dict[str, str]: ...

        def query(self, **kwargs: Any) -> Any: ...

    @staticmethod
    def _no_match(data: Any) -> bool:
        return isinstance(data, Mapping) and "id" not in data and "message" in data

    def _stream_query(self, params: Mapping[str, str]) -> Iterator[Any]:
        """Yield the records of one ``query`` answer (unchecked) while the answer arrives.

        A whole JSON array is parsed item by item (the Keck service's answer);
        one record object (``cal_id`` or ``fetch=first``) is yielded alone, and
        the "no match" message yields nothing. When the connection breaks in the
        middle, the query is asked again (up to ``retries`` times) and as many
        records as were already yielded are skipped: the archive orders its
        answer (by ``last_updated``, then ``id``), and a record that changed in
        between comes last; should one be missed, the next sync by id finds it.
        """
        url = f"{self.instrument_url}/query"
        yielded = 0
        failures = 0
        while True:
            response = self.http.send("GET", url, params=params, idempotent=True, stream=True)
            try:
                if not response.is_success:
                    self.http.read_error(response)
                    self.http.raise_for_status(response, "query calibrations")
                skip = yielded
                for is_item, value in self.http.iter_json(response, "query calibrations"):
                    if not is_item:
                        if self._no_match(value):
                            return
                        if not (isinstance(value, Mapping) and "id" in value):
                            raise self.http.shape_error(response, "a JSON array of records")
                    if skip:
                        skip -= 1
                        continue
                    if isinstance(value, dict):
                        value.pop("seq", None)
                    yielded += 1
                    yield value
                return
            except httpx.TransportError as exc:
                failures += 1
                display = redact_url(str(response.request.url))
                if failures > self.retries:
                    raise ArchiveError(
                        f"The archive at {display} cut its answer short ({type(exc).__name__}: "
                        f"{exc}) {failures} times; try again, and report it to the archive "
                        "operators if it persists.",
                        url=display,
                        status=response.status_code,
                    ) from exc
                logger.warning(
                    "The answer of %s broke off (%s); asking again (%d of %d).",
                    display,
                    type(exc).__name__,
                    failures,
                    self.retries,
                )
            finally:
                response.close()

    def _lifecycle_params(self, params: dict[str, str]) -> dict[str, str]:
        """Ask a v2 archive for retracted records too (with their lifecycle fields)."""
        if self.protocol >= 2:
            params["include_retracted"] = "1"
        return params

    def iter_records(self, *, columns: str | None = None, **filters: Any) -> Iterator[Any]:
        """Yield the archive's records as they arrive, unchecked (for sync).

        On a v1 archive the whole answer is one JSON array, parsed record by
        record while it arrives, so memory stays flat however many records
        there are; on v2 the query is paged (``page_size``). The records are
        handed over as the archive sent them (without ``seq``): the caller
        checks each one (``LocalCalibrationDB.add`` does) and sets aside those
        it cannot store. A v2 archive sends its retracted records too, with
        their lifecycle fields, so that a cache learns of retractions and
        holds as many records as the archive.

        Parameters
        ----------
        columns : str | None
            Only these columns (e.g. ``'id'``), on v2; a v1 archive always
            sends whole records.
        **filters
            As for :meth:`query`.

        Examples
        --------
        >>> ids = {rec.get("id") for rec in remote.iter_records(columns="id")}  # doctest: +SKIP
        """
        params = self._lifecycle_params(self._query_params(filters))
        if self.protocol < 2:
            yield from self._stream_query(params)
            return
        if columns:
            params["columns"] = columns
        offset = 0
        while True:
            page = dict(params, limit=str(self.page_size), offset=str(offset))
            count = 0
            for raw in self._stream_query(page):
                count += 1
                yield raw
            if count < self.page_size:
                return
            offset += count

    def fetch_raw(self, cal_id: str) -> Any:
        """Return the archive's record ``cal_id`` as sent (unchecked), or None if it has none.

        A retracted record is returned too (v2), with its lifecycle fields.
        """
        params = self._lifecycle_params(self._query_params({"cal_id": cal_id}))
        for raw in self._stream_query(params):
            return raw
        return None

    def compare_count(self, count: int) -> int | None:
        """Compare the archive's number of records of the instrument with ``count`` (v2).

        One page of at most two ids at offset ``count - 1``: cheap for the
        archive, and no count route is needed. Retracted records count (a
        cache keeps them too).

        Returns
        -------
        int | None
            -1 when the archive holds fewer records, 0 as many, 1 more; None
            on a v1 archive (it cannot page).
        """
        if self.protocol < 2:
            return None
        if count <= 0:
            return 1 if self.query(columns="id", limit=1, include_retracted=True) else 0
        page = self.query(columns="id", limit=2, offset=count - 1, include_retracted=True)
        return len(page) - 1

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
        if data.get("more") and data["next"] <= since:
            display = redact_url(str(response.request.url))
            raise ArchiveError(
                f"The archive at {display} answered changes since {since} with more to come "
                f"but a next cursor ({data['next']}) that does not move past {since}; asking "
                "again would loop forever. Report it to the archive operators.",
                url=display,
                status=response.status_code,
            )
        if validate:
            records = self._records(data["records"], response, LOCAL_REQUIRED_FIELDS)
        else:
            records = data["records"]
            for record in records:
                # Anything else is left for the caller's checks to refuse (and set aside).
                if isinstance(record, dict):
                    record.pop("seq", None)
        return {"records": records, "next": data["next"], "more": bool(data.get("more"))}

    def iter_change_pages(self, since: int) -> Iterator[dict]:
        """Yield the changes feed from ``since`` page by page (unchecked records, see
        :meth:`changes`), asking for the next page while the caller handles one."""

        def fetch(since: int) -> dict:
            # Unchecked here: the caller checks each record as it stores it.
            return self.changes(since, self.page_size, validate=False)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="koa-sync") as pool:
            pending: Future | None = pool.submit(fetch, since)
            while pending is not None:
                page = pending.result()
                pending = None
                if page["more"] and page["records"]:
                    pending = pool.submit(fetch, page["next"])
                try:
                    yield page
                except GeneratorExit:
                    if pending is not None:
                        pending.cancel()
                    raise

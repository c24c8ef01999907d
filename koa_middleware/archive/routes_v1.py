"""The v1 routes of PROTOCOL.md: ``query``, ``lastUpdated``, ``add`` and ``download``.

These answer as the Keck service does. On a protocol-2 archive ``query``
also takes ``columns``, ``limit``, ``offset`` and ``include_retracted`` and its
records carry ``seq``. A retracted record is left out of ``query`` answers unless
``include_retracted=1`` (then every record carries its lifecycle fields); its
file can still be downloaded.
What each route documents in ``/openapi.json`` is in :mod:`.openapi` (a
handler's docstring starts with ``\\f``, which keeps it out of the schema).

Examples
--------
>>> app.include_router(routes_v1.router)  # doctest: +SKIP
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .access import Access, read_access, write_access
from .bodies import parse_add_body, read_add_body
from .inputs import cal_id_param, check_filters, columns_param, flag_param, int_param
from .openapi import ADD_ROUTE, DOWNLOAD_ROUTE, LAST_UPDATED_ROUTE, QUERY_ROUTE
from .problems import BadRequest, NotFound
from .query_stream import NO_MATCH, stream_query
from .state import API_PREFIX, Archive
from .stored import open_stored, stored_entry
from .transfer import zip_chunks

logger = logging.getLogger(__name__)

__all__ = ["router", "query", "last_updated", "add", "download"]

BASE = API_PREFIX + "/{instrument}"


def query(request: Request, access: Access = Depends(read_access)) -> Response:
    """
    \f
    ``GET BASE/INST/query``: the matching records, streamed, or one record.

    Retracted records only with ``include_retracted=1`` (v2).
    """
    archive: Archive = request.app.state.archive
    v2 = archive.settings.protocol == 2
    instrument = access.granted()
    filters = dict(request.query_params)
    fetch_mode = filters.pop("fetch", None) or "all"
    if fetch_mode not in ("all", "first"):
        raise BadRequest(f"fetch must be 'all' or 'first', not {fetch_mode!r}.")
    wanted = None
    page_limit = page_offset = None
    include_retracted = False
    if v2:
        include_retracted = flag_param("include_retracted", filters.pop("include_retracted", None))
        wanted = columns_param(filters.pop("columns", None))
        page_limit = int_param("limit", filters.pop("limit", None), -1, 0, None)
        page_offset = int_param("offset", filters.pop("offset", None), 0, 0, None)
        page_limit = None if page_limit < 0 else page_limit
    single = fetch_mode == "first" or "cal_id" in filters
    if single:
        page_limit = 1 if page_limit is None else min(page_limit, 1)
    check_filters(filters)
    if not single:
        return stream_query(
            archive.catalog,
            instrument,
            filters,
            limit=page_limit,
            offset=page_offset,
            include_seq=v2,
            columns=wanted,
            batch_rows=archive.settings.query_batch,
            include_retracted=include_retracted,
            marks=archive.page_marks,
        )
    found = archive.catalog.query(
        instrument,
        filters,
        limit=page_limit,
        offset=page_offset,
        include_seq=v2,
        include_retracted=include_retracted,
    )
    if not found:
        return JSONResponse(NO_MATCH)
    record = found[0]
    if wanted:
        record = {k: record[k] for k in wanted if k in record}
    return JSONResponse(record)


def last_updated(request: Request, access: Access = Depends(read_access)) -> Response:
    """
    \f
    ``GET BASE/INST/lastUpdated``: the newest ``last_updated``, or null.
    """
    archive: Archive = request.app.state.archive
    instrument = access.granted()
    return JSONResponse({"last_updated": archive.catalog.last_updated(instrument)})


async def add(request: Request, access: Access = Depends(write_access)) -> Response:
    """
    \f
    ``POST BASE/INST/add``: upsert one record or a list, all or nothing.
    """
    archive: Archive = request.app.state.archive
    settings = archive.settings
    instrument = await run_in_threadpool(access.granted)
    data = await read_add_body(request, settings.max_add_bytes, settings.body_timeout)
    # Parsing and validating is CPU work: in a worker thread, never on the event loop.
    batch = await run_in_threadpool(parse_add_body, data, settings.max_add_records)
    del data
    ids = await run_in_threadpool(archive.catalog.add, instrument, batch)
    logger.info("Added %d record(s) to %s", len(ids), instrument)
    return JSONResponse({"added": len(ids), "ids": ids})


def download(request: Request, access: Access = Depends(read_access)) -> Response:
    """
    \f
    ``GET BASE/INST/download?cal_id=ID``: the file as the one member of a zip.
    """
    archive: Archive = request.app.state.archive
    instrument = access.granted()
    cal_id = cal_id_param(request.query_params.get("cal_id", ""))
    record = archive.catalog.get(instrument, cal_id)
    if record is None:
        raise NotFound(f"No calibration {cal_id} in {instrument}.")
    stored = stored_entry(archive, instrument, cal_id)
    handle = open_stored(archive, instrument, cal_id)
    return StreamingResponse(
        zip_chunks(handle, record["filename"], stored.size),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{cal_id}.zip"'},
    )


router = APIRouter()
router.add_api_route(BASE + "/query", query, methods=["GET"], **QUERY_ROUTE)
router.add_api_route(BASE + "/lastUpdated", last_updated, methods=["GET"], **LAST_UPDATED_ROUTE)
router.add_api_route(BASE + "/add", add, methods=["POST"], **ADD_ROUTE)
router.add_api_route(BASE + "/download", download, methods=["GET"], **DOWNLOAD_ROUTE)

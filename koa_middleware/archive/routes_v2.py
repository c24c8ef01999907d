"""The v2 routes: ``healthz``, ``changes``, raw files (GET and PUT), ``retract`` and ``unretract``.

What each route documents in ``/openapi.json`` is in :mod:`.openapi` (a
handler's docstring starts with ``\\f``, which keeps it out of the schema); what an
upload does with a file already known is decided in :mod:`.uploads`.

Examples
--------
>>> app.include_router(routes_v2.router)  # doctest: +SKIP
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Header, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from .. import __version__
from ..errors import InvalidRecordError
from ..records import validate_md5
from . import api_models as m
from .access import Access, read_access, write_access
from .bodies import body_chunks, read_add_body
from .catalog import StoredFile
from .inputs import cal_id_param, expected_size, int_param
from .openapi import (
    CHANGES_ROUTE,
    GET_FILE_ROUTE,
    HEALTHZ_ROUTE,
    MAX_CHANGES_LIMIT,
    PUT_FILE_ROUTE,
    RETRACT_ROUTE,
    UNRETRACT_ROUTE,
)
from .problems import BadRequest
from .retractions import MAX_LIFECYCLE_BYTES, parse_lifecycle_body
from .state import API_PREFIX, Archive
from .stored import open_stored, stored_entry
from .transfer import SMALL_FILE, file_chunks, parse_range, read_span, receive_file
from .uploads import check_declared_size, check_received, known_file, store_received

logger = logging.getLogger(__name__)

__all__ = ["router", "healthz", "changes", "retract", "unretract", "get_file", "put_file"]

BASE = API_PREFIX + "/{instrument}"


async def healthz() -> Response:
    """
    \f
    ``GET BASE/healthz``: protocol 2 and the server's version.
    """
    # On the event loop: no worker thread to wait for, so it answers even when all are busy.
    return JSONResponse({"status": "ok", "protocol": 2, "version": __version__})


def changes(request: Request, access: Access = Depends(read_access)) -> Response:
    """
    \f
    ``GET BASE/INST/changes?since=SEQ&limit=N``: the records changed after ``since``.
    """
    archive: Archive = request.app.state.archive
    instrument = access.granted()
    since = request.query_params.get("since")
    limit = request.query_params.get("limit")
    since_seq = int_param("since", since, 0, 0, None)
    page_size = int_param("limit", limit, 1000, 1, MAX_CHANGES_LIMIT)
    found, next_seq, more = archive.catalog.changes(instrument, since_seq, page_size)
    return JSONResponse({"records": found, "next": next_seq, "more": more})


async def retract(request: Request, access: Access = Depends(write_access)) -> Response:
    """
    \f
    ``POST BASE/INST/retract``: withdraw records (``{"ids": [...], "reason": "..."}``).
    """
    ids = await _set_lifecycle(request, access, "retract")
    return JSONResponse({"retracted": ids})


async def unretract(request: Request, access: Access = Depends(write_access)) -> Response:
    """
    \f
    ``POST BASE/INST/unretract``: make retracted records live again (``{"ids": [...]}``).
    """
    ids = await _set_lifecycle(request, access, "unretract")
    return JSONResponse({"unretracted": ids})


async def _set_lifecycle(request: Request, access: Access, action: str) -> list[str]:
    """Read, check and apply a retract or unretract request; return the ids changed."""
    archive: Archive = request.app.state.archive
    instrument = await run_in_threadpool(access.granted)
    limit = min(archive.settings.max_add_bytes, MAX_LIFECYCLE_BYTES)
    data = await read_add_body(request, limit, archive.settings.body_timeout, route=action)
    # Parsing is CPU work: in a worker thread, never on the event loop.
    ids, reason = await run_in_threadpool(parse_lifecycle_body, data, action == "retract")
    del data
    await run_in_threadpool(archive.catalog.set_lifecycle, instrument, ids, reason)
    if reason is None:
        logger.info("Made %d record(s) of %s live again", len(ids), instrument)
    else:
        logger.info("Retracted %d record(s) of %s: %s", len(ids), instrument, reason)
    return ids


def get_file(
    request: Request,
    access: Access = Depends(read_access),
    cal_id: str = PathParam(description=m.ID_DOC, json_schema_extra={"format": "uuid"}),
    range_header: str | None = Header(None, alias="Range"),
) -> Response:
    """
    \f
    ``GET BASE/INST/files/ID``: the raw file, or the span of a ``Range`` (206).
    """
    archive: Archive = request.app.state.archive
    instrument = access.granted()
    cal_id = cal_id_param(cal_id)
    stored = stored_entry(archive, instrument, cal_id)
    span = parse_range(range_header, stored.size)
    if archive.settings.redirect_downloads:
        return _redirect(archive, instrument, cal_id, stored)
    headers = {"ETag": f'"{stored.md5}"', "Accept-Ranges": "bytes"}
    start, end, status = 0, stored.size, 200
    if span is not None:
        start, end = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{stored.size}"
    headers["Content-Length"] = str(end - start)
    handle = open_stored(archive, instrument, cal_id, start, end)
    if end - start <= SMALL_FILE:
        # Still in the route's worker thread: no hand-over per block.
        return Response(
            read_span(handle, start, end),
            status_code=status,
            media_type="application/octet-stream",
            headers=headers,
        )
    return StreamingResponse(
        file_chunks(handle, start, end),
        status_code=status,
        media_type="application/octet-stream",
        headers=headers,
    )


def _redirect(archive: Archive, instrument: str, cal_id: str, stored: StoredFile) -> Response:
    """A 307 to a short-lived URL of the stored object (``--redirect-downloads``).

    The client sends no token there (the URL carries its own authority) and
    checks the MD5, announced here as the ETag, as always.
    """
    url = archive.storage.download_url(instrument, cal_id, archive.settings.redirect_seconds)
    if url is None:
        raise BadRequest("This archive's storage cannot hand out download URLs.")
    headers = {"ETag": f'"{stored.md5}"', "Cache-Control": "no-store"}
    return RedirectResponse(url, status_code=307, headers=headers)


async def put_file(
    request: Request,
    access: Access = Depends(write_access),
    cal_id: str = PathParam(description=m.ID_DOC, json_schema_extra={"format": "uuid"}),
    x_file_md5: str = Header(
        alias="X-File-MD5",
        description="Lower-case hex MD5",
        json_schema_extra={"pattern": "^[0-9a-f]{32}$"},
    ),
    x_file_size: str | None = Header(None, alias="X-File-Size", description="Bytes"),
) -> Response:
    """
    \f
    ``PUT BASE/INST/files/ID``: receive, check and store a file (201, 200 or an error).
    """
    archive: Archive = request.app.state.archive
    instrument = await run_in_threadpool(access.granted)
    cal_id = cal_id_param(cal_id)
    try:
        md5 = validate_md5(x_file_md5)
    except InvalidRecordError as exc:
        raise BadRequest(f"X-File-MD5: {exc}") from None
    declared_size = expected_size(request, x_file_size)
    limit = archive.settings.max_upload_bytes
    check_declared_size(declared_size, limit)
    already = await run_in_threadpool(known_file, archive.catalog, instrument, cal_id, md5)
    if already is not None:
        return _upload_answer(cal_id, already, stored=False)
    pending = await run_in_threadpool(archive.storage.begin, instrument, cal_id, md5)
    try:
        body = body_chunks(request, archive.settings.body_timeout)
        received = await receive_file(body, pending, limit)
        check_received(received, md5, declared_size)
        # Checked against the record and placed under the lock that add holds.
        entry, placed = await run_in_threadpool(
            store_received, archive.catalog, archive.storage, instrument, cal_id, received, pending
        )
    finally:
        await run_in_threadpool(pending.discard)
    logger.info("Stored file %s/%s (%d bytes)", instrument, cal_id, received.size)
    return _upload_answer(cal_id, entry, stored=placed)


def _upload_answer(cal_id: str, entry: StoredFile, stored: bool) -> Response:
    body = {"id": cal_id, "file_md5": entry.md5, "file_size": entry.size, "stored": stored}
    return JSONResponse(body, status_code=201 if stored else 200)


router = APIRouter()
router.add_api_route(API_PREFIX + "/healthz", healthz, methods=["GET"], **HEALTHZ_ROUTE)
router.add_api_route(BASE + "/changes", changes, methods=["GET"], **CHANGES_ROUTE)
router.add_api_route(BASE + "/retract", retract, methods=["POST"], **RETRACT_ROUTE)
router.add_api_route(BASE + "/unretract", unretract, methods=["POST"], **UNRETRACT_ROUTE)
router.add_api_route(BASE + "/files/{cal_id}", get_file, methods=["GET"], **GET_FILE_ROUTE)
router.add_api_route(BASE + "/files/{cal_id}", put_file, methods=["PUT"], **PUT_FILE_ROUTE)

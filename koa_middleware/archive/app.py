"""The archive's HTTP application (FastAPI): every route of PROTOCOL.md, v1 and v2.

Routes live under ``/api/calibrations``. ``create_app`` builds the app for one
:class:`ArchiveSettings`; with ``protocol=1`` only the v1 routes exist, and
records carry no ``seq``, like the Keck service today.

Examples
--------
>>> app = create_app(ArchiveSettings(root=Path("/tmp/archive")))  # doctest: +SKIP
"""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI, Header, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .. import __version__
from ..errors import InvalidRecordError
from ..records import validate_md5
from . import api_models as m
from .access import Access, read_access, write_access
from .bodies import body_chunks, parse_add_body, read_add_body
from .catalog import Catalog, StoredFile
from .http_errors import install_error_handlers
from .inputs import cal_id_param, check_filters, columns_param, expected_size, int_param
from .openapi import QUERY_PARAMETERS, V2_QUERY_PARAMETERS, build_openapi, query_param
from .problems import (
    ArchiveProblem,
    BadRequest,
    ChecksumMismatch,
    Conflict,
    NotFound,
    PayloadTooLarge,
)
from .query_stream import NO_MATCH, stream_query
from .state import API_PREFIX, Archive, ArchiveSettings
from .storage import FileStorage, LocalFileStorage
from .transfer import SMALL_FILE, file_chunks, parse_range, read_span, receive_file, zip_chunks

logger = logging.getLogger(__name__)

__all__ = ["API_PREFIX", "ArchiveSettings", "create_app"]

MAX_CHANGES_LIMIT = 10_000


def create_app(
    settings: ArchiveSettings,
    catalog: Catalog | None = None,
    storage: FileStorage | None = None,
) -> FastAPI:
    """Build the archive application.

    Parameters
    ----------
    settings : ArchiveSettings
        Root, catalog URL, instruments, protocol and limits.
    catalog : Catalog | None
        An open catalog; default: open the one of ``settings``.
    storage : FileStorage | None
        The file store; default ``LocalFileStorage(settings.root)``.

    Returns
    -------
    FastAPI
        The application, with ``app.state.archive`` set.
    """
    if settings.protocol not in (1, 2):
        raise ValueError(f"protocol must be 1 or 2, not {settings.protocol!r}")
    catalog = catalog or Catalog.open(settings.root, settings.db_url, settings.instruments)
    storage = storage or LocalFileStorage(settings.root)
    app = FastAPI(
        title="koa-archive",
        version=__version__,
        description="The calibration archive protocol (PROTOCOL.md): "
        + ("v1 and v2 routes." if settings.protocol == 2 else "v1 routes only."),
        docs_url=None,
        redoc_url=None,
    )
    app.state.archive = Archive(settings, catalog, storage)
    install_error_handlers(app)
    _add_v1_routes(app, v2=settings.protocol == 2)
    if settings.protocol == 2:
        _add_v2_routes(app)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


# -- routes ------------------------------------------------------------------------------
def _add_v1_routes(app: FastAPI, v2: bool) -> None:
    base = API_PREFIX + "/{instrument}"

    @app.get(
        base + "/query",
        summary="Query records",
        response_model=list[m.Record] | m.Record | m.NoMatch,
        responses=m.error_responses(400, 401, 403, 404),
        description="Filters combine with AND; any other query parameter is an equality "
        "filter on that column. Ordered by last_updated, then id. With cal_id or "
        "fetch=first the answer is one record.",
        openapi_extra={"parameters": QUERY_PARAMETERS + (V2_QUERY_PARAMETERS if v2 else [])},
    )
    def query(request: Request, access: Access = Depends(read_access)) -> Response:
        archive: Archive = request.app.state.archive
        instrument = access.granted()
        filters = dict(request.query_params)
        fetch_mode = filters.pop("fetch", None) or "all"
        if fetch_mode not in ("all", "first"):
            raise BadRequest(f"fetch must be 'all' or 'first', not {fetch_mode!r}.")
        wanted = None
        page_limit = page_offset = None
        if v2:
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
            )
        found = archive.catalog.query(
            instrument, filters, limit=page_limit, offset=page_offset, include_seq=v2
        )
        if not found:
            return JSONResponse(NO_MATCH)
        record = found[0]
        if wanted:
            record = {k: record[k] for k in wanted if k in record}
        return JSONResponse(record)

    @app.get(
        base + "/lastUpdated",
        summary="Newest last_updated",
        response_model=m.LastUpdated,
        responses=m.error_responses(401, 403, 404),
    )
    def last_updated(request: Request, access: Access = Depends(read_access)) -> Response:
        archive: Archive = request.app.state.archive
        instrument = access.granted()
        return JSONResponse({"last_updated": archive.catalog.last_updated(instrument)})

    @app.post(
        base + "/add",
        summary="Add or replace records (upsert by id, all or nothing)",
        response_model=m.AddResult,
        responses=m.error_responses(400, 401, 403, 404, 408, 409, 413),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/RecordIn"},
                                {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/RecordIn"},
                                },
                            ]
                        }
                    }
                },
            }
        },
    )
    async def add(request: Request, access: Access = Depends(write_access)) -> Response:
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

    @app.get(
        base + "/download",
        summary="Download a calibration file as a zip archive",
        response_class=Response,
        responses={
            200: {
                "description": "A zip archive with one member, the file under its "
                "record's filename",
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            },
            **m.error_responses(400, 401, 403, 404),
        },
        openapi_extra={"parameters": [query_param("cal_id", m.ID_DOC, required=True, fmt="uuid")]},
    )
    def download(request: Request, access: Access = Depends(read_access)) -> Response:
        archive: Archive = request.app.state.archive
        instrument = access.granted()
        cal_id = cal_id_param(request.query_params.get("cal_id", ""))
        record = archive.catalog.get(instrument, cal_id)
        if record is None:
            raise NotFound(f"No calibration {cal_id} in {instrument}.")
        handle, stored = _open_stored(archive, instrument, cal_id)
        return StreamingResponse(
            zip_chunks(handle, record["filename"], stored.size),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{cal_id}.zip"'},
        )


def _add_v2_routes(app: FastAPI) -> None:
    base = API_PREFIX + "/{instrument}"

    @app.get(API_PREFIX + "/healthz", summary="Protocol and version", response_model=m.Health)
    async def healthz() -> Response:
        # On the event loop: no worker thread to wait for, so it answers even when all are busy.
        return JSONResponse({"status": "ok", "protocol": 2, "version": __version__})

    @app.get(
        base + "/changes",
        summary="Records changed after seq",
        response_model=m.ChangesPage,
        responses=m.error_responses(400, 401, 403, 404),
        openapi_extra={
            "parameters": [
                query_param("since", "Last seq seen (default 0)", kind="integer"),
                query_param(
                    "limit", f"Page size, 1..{MAX_CHANGES_LIMIT} (default 1000)", kind="integer"
                ),
            ]
        },
    )
    def changes(request: Request, access: Access = Depends(read_access)) -> Response:
        archive: Archive = request.app.state.archive
        instrument = access.granted()
        since = request.query_params.get("since")
        limit = request.query_params.get("limit")
        since_seq = int_param("since", since, 0, 0, None)
        page_size = int_param("limit", limit, 1000, 1, MAX_CHANGES_LIMIT)
        found, next_seq, more = archive.catalog.changes(instrument, since_seq, page_size)
        return JSONResponse({"records": found, "next": next_seq, "more": more})

    @app.get(
        base + "/files/{cal_id}",
        summary="Download the raw file (resumable with Range)",
        response_class=Response,
        responses={
            200: m.binary_content("The whole file"),
            206: m.binary_content("The requested tail of the file"),
            **m.error_responses(400, 401, 403, 404, 416),
        },
    )
    def get_file(
        request: Request,
        access: Access = Depends(read_access),
        cal_id: str = PathParam(description=m.ID_DOC, json_schema_extra={"format": "uuid"}),
        range_header: str | None = Header(None, alias="Range"),
    ) -> Response:
        archive: Archive = request.app.state.archive
        instrument = access.granted()
        cal_id = cal_id_param(cal_id)
        handle, stored = _open_stored(archive, instrument, cal_id)
        try:
            span = parse_range(range_header, stored.size)
        except ArchiveProblem:
            handle.close()
            raise
        headers = {"ETag": f'"{stored.md5}"', "Accept-Ranges": "bytes"}
        start, end, status = 0, stored.size, 200
        if span is not None:
            start, end = span
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{stored.size}"
        headers["Content-Length"] = str(end - start)
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

    @app.put(
        base + "/files/{cal_id}",
        summary="Upload the raw file (checked by length and MD5)",
        status_code=201,
        response_model=m.UploadResult,
        responses={
            200: {"model": m.UploadResult, "description": "The same bytes were already stored"},
            **m.error_responses(400, 401, 403, 404, 408, 409, 413, 422),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
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
        archive: Archive = request.app.state.archive
        instrument = await run_in_threadpool(access.granted)
        cal_id = cal_id_param(cal_id)
        try:
            md5 = validate_md5(x_file_md5)
        except InvalidRecordError as exc:
            raise BadRequest(f"X-File-MD5: {exc}") from None
        declared_size = expected_size(request, x_file_size)
        limit = archive.settings.max_upload_bytes
        if limit is not None and declared_size is not None and declared_size > limit:
            raise PayloadTooLarge(
                f"The file has {declared_size} bytes; this archive accepts at most {limit}. "
                "Ask the operator to raise --max-upload-bytes."
            )
        already = await run_in_threadpool(_known_file, archive, instrument, cal_id, md5)
        if already is not None:
            return _upload_answer(cal_id, already, stored=False)
        pending = await run_in_threadpool(archive.storage.begin, instrument)
        try:
            body = body_chunks(request, archive.settings.body_timeout)
            received = await receive_file(body, pending, limit)
            if declared_size is not None and received.size != declared_size:
                raise ChecksumMismatch(
                    f"Received {received.size} bytes but {declared_size} were declared; "
                    "the upload was cut short: send it again."
                )
            if received.md5 != md5:
                raise ChecksumMismatch(
                    f"The received bytes have MD5 {received.md5}, not {md5} as declared in "
                    "X-File-MD5; the file changed or was damaged on the way: send it again."
                )
            # Checked against the record and placed under the lock that add holds.
            entry, placed = await run_in_threadpool(
                archive.catalog.enter_file,
                instrument,
                cal_id,
                received,
                lambda: archive.storage.place(pending, instrument, cal_id),
            )
        finally:
            await run_in_threadpool(pending.discard)
        if entry is None:
            # A file placed just before a crash, never entered: trust only its bytes.
            entry = await run_in_threadpool(_adopt_file, archive, instrument, cal_id)
        if entry != received:
            raise _different_bytes(cal_id, entry)
        logger.info("Stored file %s/%s (%d bytes)", instrument, cal_id, received.size)
        return _upload_answer(cal_id, entry, stored=placed)


# -- files -------------------------------------------------------------------------------
def _known_file(archive: Archive, instrument: str, cal_id: str, md5: str) -> StoredFile | None:
    """Decide an upload without reading it when the id already has a file or a record."""
    entry = archive.catalog.file(instrument, cal_id)
    if entry is not None:
        if entry.md5 != md5:
            raise _different_bytes(cal_id, entry)
        return entry
    record = archive.catalog.get(instrument, cal_id)
    if record is not None and record.get("file_md5") and record["file_md5"] != md5:
        raise Conflict(
            f"Calibration {cal_id} is recorded with file_md5 {record['file_md5']}, but this "
            f"upload declares {md5}; upload the file that belongs to the record."
        )
    return None


def _adopt_file(archive: Archive, instrument: str, cal_id: str) -> StoredFile:
    found = archive.storage.digest(instrument, cal_id)
    entry, _ = archive.catalog.enter_file(instrument, cal_id, found)
    assert entry is not None  # without ``place``, enter_file always returns the entry
    return entry


def _different_bytes(cal_id: str, entry: StoredFile) -> Conflict:
    return Conflict(
        f"Different bytes are already stored for {cal_id} (MD5 {entry.md5}, {entry.size} bytes); "
        "a stored file never changes: publish the new file under a new id."
    )


def _upload_answer(cal_id: str, entry: StoredFile, stored: bool) -> Response:
    body = {"id": cal_id, "file_md5": entry.md5, "file_size": entry.size, "stored": stored}
    return JSONResponse(body, status_code=201 if stored else 200)


def _open_stored(archive: Archive, instrument: str, cal_id: str):
    entry = archive.catalog.file(instrument, cal_id)
    if entry is None:
        raise NotFound(
            f"No file is stored for calibration {cal_id} in {instrument}; upload it first."
        )
    try:
        return archive.storage.open(instrument, cal_id), entry
    except FileNotFoundError:
        logger.error("File of %s/%s is in the catalog but missing from storage", instrument, cal_id)
        raise NotFound(
            f"The file of calibration {cal_id} is missing from storage; tell the archive operator."
        ) from None

"""The archive's HTTP application (FastAPI): every route of PROTOCOL.md, v1 and v2.

Routes live under ``/api/calibrations``. ``create_app`` builds the app for one
:class:`ArchiveSettings`; with ``protocol=1`` only the v1 routes exist, and
records carry no ``seq``, like the Keck service today.

Examples
--------
>>> app = create_app(ArchiveSettings(root=Path("/tmp/archive")))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import InvalidRecordError
from ..records import (
    ARCHIVE_REQUIRED_FIELDS,
    SERVER_FIELDS,
    validate_cal_id,
    validate_column_name,
    validate_md5,
    validate_record,
)
from . import api_models as m
from .catalog import Catalog, StoredFile
from .problems import (
    ArchiveProblem,
    BadRequest,
    ChecksumMismatch,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from .storage import FileStorage, LocalFileStorage
from .tokens import TokenStore, scope_allows
from .transfer import file_chunks, parse_range, receive_file, zip_chunks

logger = logging.getLogger(__name__)

__all__ = ["API_PREFIX", "ArchiveSettings", "create_app"]

API_PREFIX = "/api/calibrations"
#: Largest JSON body ``add`` reads (a batch of many thousand records fits).
MAX_JSON_BYTES = 256 * 1024 * 1024
MAX_CHANGES_LIMIT = 10_000
NO_MATCH = {"message": "No matching calibrations found."}


@dataclass(frozen=True)
class ArchiveSettings:
    """How one archive server runs (the options of ``koa-archive serve``)."""

    root: Path
    db_url: str | None = None
    instruments: tuple[str, ...] = ("hispec", "liger")
    anonymous_read: bool = False
    protocol: int = 2
    max_upload_bytes: int | None = None


class Archive:
    """What the routes share: settings, catalog, tokens and file storage."""

    def __init__(self, settings: ArchiveSettings, catalog: Catalog, storage: FileStorage):
        self.settings = settings
        self.catalog = catalog
        self.storage = storage
        self.tokens = TokenStore(catalog.engine)


_bearer = HTTPBearer(auto_error=False, description="A token from `koa-archive token create`")


class Access:
    """A request's claim to an instrument, checked by :meth:`granted` (in a worker thread).

    The token lookup needs the catalog, so it runs inside the route's own worker
    thread rather than in an extra one of its own.
    """

    def __init__(self, archive: Archive, request: Request, needed: str, instrument: str):
        self.archive = archive
        self.request = request
        self.needed = needed
        self.instrument = instrument

    def granted(self) -> str:
        """Check the token's scope, then the instrument; return the instrument's name.

        Raises
        ------
        Unauthorized, Forbidden, NotFound
        """
        _authorize(self.archive, self.request, self.needed)
        name = self.instrument.lower()
        if name not in self.archive.settings.instruments:
            raise NotFound(
                f"Unknown instrument {self.instrument!r}: this archive serves "
                f"{', '.join(self.archive.settings.instruments)}."
            )
        return name


def _access(needed: str) -> Callable[..., Awaitable[Access]]:
    """A dependency that hands the route an :class:`Access` needing scope ``needed``."""

    async def dependency(
        request: Request,
        instrument: str = PathParam(description="Instrument name, lower case (e.g. hispec)"),
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Access:
        return Access(request.app.state.archive, request, needed, instrument)

    return dependency


def _authorize(archive: Archive, request: Request, needed: str) -> None:
    header = request.headers.get("authorization")
    challenge = {"WWW-Authenticate": "Bearer"}
    if not header:
        if needed == "read" and archive.settings.anonymous_read:
            return
        raise Unauthorized(
            "This archive needs a token: send 'Authorization: Bearer <token>' "
            "(set KOA_API_TOKEN); ask the archive operator for one.",
            headers=challenge,
        )
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized(
            "Malformed Authorization header: send 'Authorization: Bearer <token>'.",
            headers=challenge,
        )
    found = archive.tokens.check(secret.strip())
    if found is None:
        raise Unauthorized(
            "The token is unknown or revoked; ask the archive operator for a new one.",
            headers=challenge,
        )
    name, scope = found
    if not scope_allows(scope, needed):
        raise Forbidden(
            f"Token {name!r} has scope {scope!r}, but this needs {needed!r}; "
            "ask the archive operator for a token with that scope."
        )


read_access = _access("read")
write_access = _access("write")


def _cal_id(value: str) -> str:
    try:
        return validate_cal_id(value)
    except InvalidRecordError as exc:
        raise BadRequest(str(exc)) from None


def _int_param(name: str, value: str | None, default: int, low: int, high: int | None) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    high = MAX_INT if high is None else high
    if number is None or number < low or number > high:
        bounds = f"{low}..{high}"
        raise BadRequest(
            f"Query parameter {name!r} must be a whole number {bounds}, not {value!r}."
        )
    return number


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
    _install_error_handlers(app)
    _add_v1_routes(app, v2=settings.protocol == 2)
    if settings.protocol == 2:
        _add_v2_routes(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


# -- routes ------------------------------------------------------------------------------
def _param(
    name: str, description: str, required: bool = False, kind: str = "string", fmt: str = ""
) -> dict[str, Any]:
    """An OpenAPI query parameter. Routes read their query parameters themselves (no
    per-request model building), so they are documented here rather than in signatures."""
    schema: dict[str, Any] = {"type": kind}
    if fmt:
        schema["format"] = fmt
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


QUERY_PARAMETERS = [
    _param("cal_id", m.ID_DOC, fmt="uuid"),
    _param("filename", "Equal to this file name"),
    _param("cal_type", "Equal to this calibration type"),
    _param("origin", "Equal to this origin"),
    _param("date_time_start", "datetime_obs >= this"),
    _param("date_time_end", "datetime_obs <= this"),
    _param("last_updated_start", "last_updated > this"),
    _param("last_updated_end", "last_updated <= this"),
    _param("cal_version_min", "cal_version >= this"),
    _param("cal_version_max", "cal_version <= this"),
    _param("fetch", "all (default) or first"),
]
V2_QUERY_PARAMETERS = [
    _param("columns", "Comma-separated columns to return"),
    _param("limit", "At most this many records", kind="integer"),
    _param("offset", "Skip this many records", kind="integer"),
]


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
            wanted = _columns(filters.pop("columns", None))
            page_limit = _int_param("limit", filters.pop("limit", None), -1, 0, None)
            page_offset = _int_param("offset", filters.pop("offset", None), 0, 0, None)
            page_limit = None if page_limit < 0 else page_limit
        single = fetch_mode == "first" or "cal_id" in filters
        if single:
            page_limit = 1 if page_limit is None else min(page_limit, 1)
        _check_filters(filters)
        found = archive.catalog.query(
            instrument, filters, limit=page_limit, offset=page_offset, include_seq=v2
        )
        if not found:
            return JSONResponse(NO_MATCH)
        if wanted:
            found = [{k: rec[k] for k in wanted if k in rec} for rec in found]
        return JSONResponse(found[0] if single else found)

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
        responses=m.error_responses(400, 401, 403, 404, 409, 413),
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
        instrument = await run_in_threadpool(access.granted)
        batch = _parse_batch(await _read_json_body(request))
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
        openapi_extra={"parameters": [_param("cal_id", m.ID_DOC, required=True, fmt="uuid")]},
    )
    def download(request: Request, access: Access = Depends(read_access)) -> Response:
        archive: Archive = request.app.state.archive
        instrument = access.granted()
        cal_id = _cal_id(request.query_params.get("cal_id", ""))
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
    def healthz() -> Response:
        return JSONResponse({"status": "ok", "protocol": 2, "version": __version__})

    @app.get(
        base + "/changes",
        summary="Records changed after seq",
        response_model=m.ChangesPage,
        responses=m.error_responses(400, 401, 403, 404),
        openapi_extra={
            "parameters": [
                _param("since", "Last seq seen (default 0)", kind="integer"),
                _param(
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
        since_seq = _int_param("since", since, 0, 0, None)
        page_size = _int_param("limit", limit, 1000, 1, MAX_CHANGES_LIMIT)
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
        cal_id = _cal_id(cal_id)
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
            **m.error_responses(400, 401, 403, 404, 409, 413, 422),
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
        cal_id = _cal_id(cal_id)
        try:
            md5 = validate_md5(x_file_md5)
        except InvalidRecordError as exc:
            raise BadRequest(f"X-File-MD5: {exc}") from None
        expected_size = _expected_size(request, x_file_size)
        limit = archive.settings.max_upload_bytes
        if limit is not None and expected_size is not None and expected_size > limit:
            raise PayloadTooLarge(
                f"The file has {expected_size} bytes; this archive accepts at most {limit}. "
                "Ask the operator to raise --max-upload-bytes."
            )
        already = await run_in_threadpool(_known_file, archive, instrument, cal_id, md5)
        if already is not None:
            return _upload_answer(cal_id, already, stored=False)
        pending = await run_in_threadpool(archive.storage.begin, instrument)
        try:
            received = await receive_file(request.stream(), pending, limit)
            if expected_size is not None and received.size != expected_size:
                raise ChecksumMismatch(
                    f"Received {received.size} bytes but {expected_size} were declared; "
                    "the upload was cut short: send it again."
                )
            if received.md5 != md5:
                raise ChecksumMismatch(
                    f"The received bytes have MD5 {received.md5}, not {md5} as declared in "
                    "X-File-MD5; the file changed or was damaged on the way: send it again."
                )
            placed = await run_in_threadpool(archive.storage.place, pending, instrument, cal_id)
        finally:
            await run_in_threadpool(pending.discard)
        if placed:
            entry = await run_in_threadpool(archive.catalog.add_file, instrument, cal_id, received)
        else:
            # Raced another upload, or a file placed just before a crash: trust only the bytes.
            entry = await run_in_threadpool(_adopt_file, archive, instrument, cal_id)
        if entry != received:
            raise _different_bytes(cal_id, entry)
        logger.info("Stored file %s/%s (%d bytes)", instrument, cal_id, received.size)
        return _upload_answer(cal_id, entry, stored=placed)


# -- helpers of the routes ---------------------------------------------------------------
def _columns(value: str | None) -> list[str] | None:
    if not value:
        return None
    try:
        return [validate_column_name(name.strip()) for name in value.split(",") if name.strip()]
    except InvalidRecordError as exc:
        raise BadRequest(f"Query parameter 'columns': {exc}") from None


async def _read_json_body(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"An add body may hold at most {MAX_JSON_BYTES} bytes; split it.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BYTES:
            raise PayloadTooLarge(f"An add body may hold at most {MAX_JSON_BYTES} bytes; split it.")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(
            f"The body is not valid JSON ({exc}); send one record object or an array of them."
        ) from None


def _parse_batch(body: Any) -> list[dict[str, Any]]:
    items = body if isinstance(body, list) else [body]
    batch: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            record = validate_record(item, required=ARCHIVE_REQUIRED_FIELDS, drop=SERVER_FIELDS)
            for key, value in record.items():
                _check_storable(key, value)
        except (ValueError, OverflowError) as exc:  # InvalidRecordError is a ValueError
            errors.append({"index": index, "reason": str(exc)})
            continue
        for key in ("id", "filename"):
            first = seen.setdefault(f"{key}:{record[key]}", index)
            if first != index:
                errors.append(
                    {"index": index, "reason": f"{key} {record[key]!r} repeats record {first}."}
                )
        batch.append(record)
    if errors:
        problem = BadRequest(
            f"{len(errors)} of {len(items)} record(s) are invalid, so none was added; "
            "fix them and send the batch again."
        )
        problem.extra = {"errors": errors}  # type: ignore[attr-defined]
        raise problem
    return batch


#: The largest integer both catalog databases store (signed 64 bits).
MAX_INT = 2**63 - 1


def _check_storable(key: str, value: Any) -> None:
    """Refuse values the catalog databases cannot hold faithfully."""
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            raise InvalidRecordError(f"Invalid value for {key!r}: {problem}.")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidRecordError(f"Invalid value for {key!r}: {value} is not a finite number.")
    elif isinstance(value, int) and key in ("file_size",) and value > MAX_INT:
        raise InvalidRecordError(f"Invalid {key} {value}: larger than {MAX_INT}.")


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "it holds a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid Unicode text (lone surrogate)"
    return None


def _check_filters(filters: dict[str, str]) -> None:
    for name, value in filters.items():
        problem = _text_problem(name) or _text_problem(value)
        if problem:
            raise BadRequest(f"Query parameter {name!r}: {problem}.")


def _expected_size(request: Request, declared: str | None) -> int | None:
    for name, value in (
        ("X-File-Size", declared),
        ("Content-Length", request.headers.get("content-length")),
    ):
        if value is None:
            continue
        if not value.strip().isdigit():
            raise BadRequest(f"{name} must be a byte count, not {value!r}.")
        return int(value)
    return None


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
    entry = archive.catalog.file(instrument, cal_id)
    if entry is None:
        entry = archive.catalog.add_file(
            instrument, cal_id, archive.storage.digest(instrument, cal_id)
        )
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


# -- errors and schema -------------------------------------------------------------------
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "checksum_mismatch",
}


def _error(status: int, code: str, message: str, headers=None, **extra) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ArchiveProblem)
    async def on_problem(_request: Request, exc: ArchiveProblem) -> JSONResponse:
        extra = getattr(exc, "extra", {})
        return _error(exc.status, exc.code, exc.message, exc.headers, **extra)

    @app.exception_handler(InvalidRecordError)
    async def on_invalid(_request: Request, exc: InvalidRecordError) -> JSONResponse:
        return _error(400, "bad_request", str(exc))

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        return _error(400, "bad_request", f"Invalid request: {problems}.")

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"No such route; the calibrations API lives under {API_PREFIX}."
        elif exc.status_code == 405:
            message = "This route does not take that method; see /openapi.json."
        return _error(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def on_fault(_request: Request, exc: Exception) -> JSONResponse:
        logger.error("Request failed", exc_info=exc)
        return _error(500, "internal_error", "The archive failed; its log says why.")


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, with FastAPI's 422 validation answers replaced by our 400."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (m.RecordIn, m.ErrorBody):
        components.setdefault(
            model.__name__, model.model_json_schema(ref_template="#/components/schemas/{model}")
        )
    components.update(components[m.ErrorBody.__name__].pop("$defs", {}))
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    error_ref = {"$ref": f"#/components/schemas/{m.ErrorBody.__name__}"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            validation = responses.get("422", {})
            if "HTTPValidationError" in json.dumps(validation):
                del responses["422"]
            responses.setdefault(
                "400",
                {
                    "description": "Bad input",
                    "content": {"application/json": {"schema": error_ref}},
                },
            )
    app.openapi_schema = schema
    return schema

"""The JSON error answers of PROTOCOL.md (``{"error": code, "message": ...}``) for every failure."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import InvalidRecordError
from .problems import (
    ArchiveProblem,
)
from .state import API_PREFIX

logger = logging.getLogger(__name__)


ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "checksum_mismatch",
}


def error_response(status: int, code: str, message: str, headers=None, **extra) -> JSONResponse:
    """Return the JSON error answer ``{"error": code, "message": message, **extra}``."""
    return JSONResponse({"error": code, "message": message, **extra}, status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure with the JSON error body; log unexpected ones (500)."""

    @app.exception_handler(ArchiveProblem)
    async def on_problem(_request: Request, exc: ArchiveProblem) -> JSONResponse:
        extra = getattr(exc, "extra", {})
        return error_response(exc.status, exc.code, exc.message, exc.headers, **extra)

    @app.exception_handler(InvalidRecordError)
    async def on_invalid(_request: Request, exc: InvalidRecordError) -> JSONResponse:
        return error_response(400, "bad_request", str(exc))

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        return error_response(400, "bad_request", f"Invalid request: {problems}.")

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = ERROR_CODES.get(exc.status_code, "error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"No such route; the calibrations API lives under {API_PREFIX}."
        elif exc.status_code == 405:
            message = "This route does not take that method; see /openapi.json."
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def on_disconnect(request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # A client that dies mid-body is no fault of the archive: one line, no traceback.
        logger.info(
            "The client left before sending the whole body of %s %s; nothing was kept.",
            request.method,
            request.url.path,
        )
        return error_response(400, "bad_request", "The request body was cut short.")

    @app.exception_handler(Exception)
    async def on_fault(_request: Request, exc: Exception) -> JSONResponse:
        logger.error("Request failed", exc_info=exc)
        return error_response(500, "internal_error", "The archive failed; its log says why.")

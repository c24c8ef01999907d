"""Errors of the archive service, each with its HTTP status and error code (PROTOCOL.md, Errors)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

__all__ = [
    "ArchiveProblem",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "RangeNotSatisfiable",
    "ChecksumMismatch",
]


class ArchiveProblem(Exception):
    """An error the archive answers with ``{"error": code, "message": ...}`` and ``status``.

    Parameters
    ----------
    message : str
        One line a person can act on.
    headers : dict | None
        Extra response headers (e.g. ``WWW-Authenticate``).
    """

    status = 500
    code = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ArchiveProblem):
    """400: the request is malformed or breaks a record rule."""

    status = 400
    code = "bad_request"


class Unauthorized(ArchiveProblem):
    """401: no token, or a token the archive does not know."""

    status = 401
    code = "unauthorized"


class Forbidden(ArchiveProblem):
    """403: the token lacks the scope the route needs."""

    status = 403
    code = "forbidden"


class NotFound(ArchiveProblem):
    """404: unknown instrument, record or file."""

    status = 404
    code = "not_found"


class Conflict(ArchiveProblem):
    """409: the request contradicts what is stored."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ArchiveProblem):
    """413: the body is larger than the server accepts."""

    status = 413
    code = "payload_too_large"


class RangeNotSatisfiable(ArchiveProblem):
    """416: the requested byte range starts past the end of the file."""

    status = 416
    code = "range_not_satisfiable"


class ChecksumMismatch(ArchiveProblem):
    """422: an upload's length or MD5 differs from what the client declared."""

    status = 422
    code = "checksum_mismatch"

"""Errors of the archive service, each with its HTTP status and error code (PROTOCOL.md, Errors)."""

from __future__ import annotations

import logging
from typing import Any

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
    "RequestTimeout",
    "MAX_REPORTED_ERRORS",
    "invalid_batch",
]

#: Errors listed in the answer to a bad batch; the answer also says how many there were.
MAX_REPORTED_ERRORS = 10
#: Characters of one reason in an answer (a reason may quote a huge value).
MAX_REASON_CHARS = 500


def shorten(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """Return ``text`` cut to ``limit`` characters, marking the cut.

    Examples
    --------
    >>> shorten("abcdef", 4)
    'a...'
    """
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


class RequestTimeout(ArchiveProblem):
    """408: the client stopped sending its request body."""

    status = 408
    code = "request_timeout"


def invalid_batch(errors: list[dict[str, Any]], total: int) -> BadRequest:
    """Return the 400 for a batch with ``errors`` (``{"index", "reason", ...}``) in order.

    The answer lists the first :data:`MAX_REPORTED_ERRORS` errors and counts them all,
    so that a batch of many bad records gets a short answer.
    """
    shown = [
        dict(error, reason=shorten(str(error["reason"]))) for error in errors[:MAX_REPORTED_ERRORS]
    ]
    listed = "" if len(shown) == len(errors) else f"; the first {len(shown)} are listed"
    problem = BadRequest(
        f"{len(errors)} of {total} record(s) are invalid, so none was added{listed}. "
        f"First: record {shown[0]['index']}: {shown[0]['reason']} "
        "Fix them and send the batch again."
    )
    problem.extra = {"errors": shown, "error_count": len(errors)}  # type: ignore[attr-defined]
    return problem

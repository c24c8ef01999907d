"""Form posts the pages accept: a bounded body, its multipart parts, and the CSRF token.

Uploads (a run manifest, a frame's FITS header) come as ``multipart/form-data``.
Starlette parses that only with ``python-multipart``, which is not a dependency of
this package, so :func:`read_body` reads the body itself, never more than a bound,
and :func:`parse_multipart` splits it (RFC 7578: parts with a ``Content-Disposition``
naming the field and, for a file, its name). A body cut at the bound keeps its last
part partial, which is what a FITS header needs: its first blocks, not the frame.

Every post carries a CSRF token (:class:`FormToken`): the session's own where the
archive needs a login, else a random value also set in a cookie (double submit,
``SameSite=Strict``), so that another site cannot make a browser post to these pages.

Examples
--------
>>> body = (b'--XY\\r\\nContent-Disposition: form-data; name="csrf"\\r\\n\\r\\nabc\\r\\n'
...         b'--XY\\r\\nContent-Disposition: form-data; name="m"; filename="a.json"\\r\\n'
...         b'Content-Type: application/json\\r\\n\\r\\n{}\\r\\n--XY--\\r\\n')
>>> parts = parse_multipart(body, "multipart/form-data; boundary=XY")
>>> [(p.name, p.filename, p.data) for p in parts]
[('csrf', None, b'abc'), ('m', 'a.json', b'{}')]
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from ..errors import KOAError
from .sessions import same

logger = logging.getLogger(__name__)

__all__ = [
    "FORM_COOKIE",
    "BodyRefused",
    "FormPart",
    "FormToken",
    "parse_multipart",
    "read_body",
    "read_form",
]

#: The cookie of the double-submit CSRF value of the upload forms.
FORM_COOKIE = "koa_ui_form"
#: Parts of a form read at most (the fields of these forms are few).
MAX_PARTS = 16
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,./:=? -]{1,70}\Z")
_PARAM = re.compile(r';\s*([A-Za-z*]+)="((?:[^"\\]|\\.)*)"|;\s*([A-Za-z*]+)=([^;\s]*)')


class BodyRefused(KOAError, ValueError):
    """A form body that is too large or not readable; ``status`` is the answer's code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FormPart:
    """One field of a form: its name, the uploaded file's name (None: a plain field), its bytes.

    ``complete`` is False for the last part of a body cut at the bound.
    """

    name: str
    filename: str | None
    data: bytes
    complete: bool = True

    @property
    def text(self) -> str:
        """The value of a plain field as text (undecodable bytes replaced)."""
        return self.data.decode("utf-8", errors="replace")


async def read_body(request: Request, limit: int, cut: bool = False) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes of the request's body.

    Parameters
    ----------
    request : Request
        The post.
    limit : int
        Bytes read at most.
    cut : bool
        Keep the first ``limit`` bytes of a longer body (a FITS header needs no more),
        instead of refusing it.

    Returns
    -------
    tuple of (bytes, bool)
        The bytes, and whether they are the whole body.

    Raises
    ------
    BodyRefused
        With status 413 when the body is longer than ``limit`` and ``cut`` is off.
    """
    declared = request.headers.get("content-length", "")
    too_large = BodyRefused(
        f"The upload is larger than {limit / 2**20:.0f} MiB, which this page reads at most; "
        "check a smaller file (a run manifest is far smaller).",
        413,
    )
    if declared.isdigit() and int(declared) > limit and not cut:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            if not cut:
                raise too_large
            return bytes(body[:limit]), False
    return bytes(body), True


def parse_multipart(body: bytes, content_type: str, complete: bool = True) -> list[FormPart]:
    """The parts of a ``multipart/form-data`` body.

    Parameters
    ----------
    body : bytes
        The body (or its first bytes, when ``complete`` is False).
    content_type : str
        The request's ``Content-Type``, which names the boundary.
    complete : bool
        Whether ``body`` is the whole body; if not, its last part is kept, partial.

    Raises
    ------
    BodyRefused
        If the body is not multipart, has no boundary or too many parts, or a
        part has no name.
    """
    kind, params = _header_value(content_type)
    boundary = params.get("boundary", "")
    if kind != "multipart/form-data" or not _BOUNDARY.match(boundary):
        raise BodyRefused("The form was not sent as multipart/form-data; use the page's form.")
    delimiter = b"\r\n--" + boundary.encode("ascii")
    # The first piece is the preamble (empty when the body begins with the delimiter).
    pieces = (b"\r\n" + body).split(delimiter)[1:]
    parts = []
    for number, piece in enumerate(pieces):
        if piece.startswith(b"--"):
            break  # the closing delimiter
        last = number == len(pieces) - 1
        if last and complete:
            raise BodyRefused("The form's body ends before its closing boundary; send it again.")
        part = _part(piece.removeprefix(b"\r\n"), complete=not last)
        if part is not None:
            parts.append(part)
        if len(parts) > MAX_PARTS:
            raise BodyRefused(f"The form has more than {MAX_PARTS} fields; use the page's form.")
    return parts


def _part(piece: bytes, complete: bool) -> FormPart | None:
    head, sep, data = piece.partition(b"\r\n\r\n")
    if not sep:
        if complete:
            raise BodyRefused("A part of the form has no headers; use the page's form.")
        return None  # cut in its headers: nothing of it arrived
    disposition = ""
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-disposition":
            disposition = value
    kind, params = _header_value(disposition)
    if kind != "form-data" or not params.get("name"):
        raise BodyRefused("A part of the form has no field name; use the page's form.")
    return FormPart(params["name"], params.get("filename"), data, complete)


def _header_value(text: str) -> tuple[str, dict[str, str]]:
    """A header's main value (lower case) and its parameters (``name="value"``)."""
    main, _, rest = text.partition(";")
    params = {}
    for match in _PARAM.finditer(";" + rest):
        if match.group(1):
            params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", match.group(2))
        else:
            params[match.group(3).lower()] = match.group(4)
    return main.strip().lower(), params


async def read_form(request: Request, limit: int) -> dict[str, FormPart]:
    """A whole form, multipart or urlencoded, by field name (the first of a repeated name).

    Raises
    ------
    BodyRefused
        If it is larger than ``limit`` (413) or cannot be read.
    """
    body, _ = await read_body(request, limit)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                              max_num_fields=MAX_PARTS)  # fmt: skip
        except (UnicodeDecodeError, ValueError):
            raise BodyRefused("The form could not be read; use the page's form.") from None
        found = [FormPart(k, None, v.encode()) for k, v in pairs]
    else:
        found = parse_multipart(body, content_type)
    fields: dict[str, FormPart] = {}
    for part in found:
        fields.setdefault(part.name, part)
    return fields


class FormToken:
    """The CSRF token of the upload forms: the session's, else a double-submit cookie."""

    @staticmethod
    def value(request: Request) -> tuple[str, bool]:
        """The token to put in a form, and whether it must be set as a cookie."""
        viewer = getattr(request.state, "viewer", None)
        if viewer is not None:
            return viewer[1].csrf, False
        known = request.cookies.get(FORM_COOKIE, "")
        if re.fullmatch(r"[A-Za-z0-9_-]{40,64}", known):
            return known, False
        return secrets.token_urlsafe(32), True

    @staticmethod
    def set_cookie(response: Response, request: Request, token: str, base: str) -> None:
        """Set the double-submit cookie under the pages' mount point."""
        response.set_cookie(
            FORM_COOKIE,
            token,
            path=base + "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def valid(request: Request, sent: str | None) -> bool:
        """Whether the form's token is this browser's."""
        viewer = getattr(request.state, "viewer", None)
        expected = viewer[1].csrf if viewer is not None else request.cookies.get(FORM_COOKIE)
        return same(sent, expected)

"""Retracting a calibration and making it live again from its record page (archive only).

A browser signed in with a token of scope ``write`` sees, on a record's page, a form
with a reason (retract) or a button (make live again). Sending it shows a second page
that says what will change and asks to confirm; only that confirmation changes the
catalog, through the reader's :meth:`~.reader.CalibrationReader.set_lifecycle`, the
catalog's write path the API's ``retract`` and ``unretract`` routes use, so the
record gets the next ``seq`` and the changes feed tells every follower.

Both steps are POSTs carrying the session's CSRF token: a missing or wrong one, an
anonymous browser, a ``read`` token or a local cache get 403 and nothing changes.

Routes: ``POST /INST/records/ID/retract`` and ``POST /INST/records/ID/unretract``
(fields ``csrf``, ``reason`` for a retraction, ``confirm=yes`` on the second step).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..errors import InvalidRecordError
from ..records import MAX_REASON_CHARS, retraction_reason
from .reader import BadQuery
from .record_page import RecordPages
from .sessions import SESSION_COOKIE, same

if TYPE_CHECKING:
    from .app import Pages

logger = logging.getLogger(__name__)

__all__ = ["MAX_ACTION_FORM_BYTES", "RecordActions"]

#: Bytes of a retract or unretract form read at most: a reason of 2,000 characters,
#: each up to 4 bytes of UTF-8 percent-encoded (12 bytes), and the other fields.
MAX_ACTION_FORM_BYTES = MAX_REASON_CHARS * 12 + 1024


class FormRefused(Exception):
    """A form that is not read: too large (413) or not a urlencoded form (400)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class RecordActions:
    """The retract and unretract forms of the record page.

    Parameters
    ----------
    pages : Pages
        The site's page handlers (rendering, access, the reader, the gate).
    """

    def __init__(self, pages: Pages):
        self.pages = pages
        self.records = RecordPages(pages)

    async def retract(self, request: Request) -> Response:
        """Ask to confirm a retraction with its reason; on confirmation, retract."""
        return await self._act(request, "retract")

    async def unretract(self, request: Request) -> Response:
        """Ask to confirm making a record live again; on confirmation, do it."""
        return await self._act(request, "unretract")

    async def _act(self, request: Request, action: str) -> Response:
        pages = self.pages
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            form = await _read_form(request)
        except FormRefused as exc:
            return pages.problem(request, exc.status, str(exc))
        gate = pages.gate
        writer = gate.writer(request.cookies.get(SESSION_COOKIE)) if gate else None
        if writer is None:
            return pages.problem(
                request,
                403,
                "Retracting needs a token of scope 'write': sign in with one, then open the "
                "record again.",
            )
        if not same(form.get("csrf"), writer[1].csrf):
            return pages.problem(
                request, 403, "The form expired or came from elsewhere; open the record again."
            )
        request.state.viewer = writer  # a writer reads too: the pages show who signed in
        refusal, inst, record = self.records.locate(request)
        if refusal is not None:
            return refusal
        retracted = bool(record.get("retracted_at"))
        if action == "retract" and retracted:
            message = "This calibration is retracted already; make it live again first."
            return pages.problem(request, 409, message)
        if action == "unretract" and not retracted:
            return pages.problem(request, 409, "This calibration is live: nothing to undo.")
        reason = None
        if action == "retract":
            try:
                reason = retraction_reason(form.get("reason"))
            except InvalidRecordError as exc:
                return pages.problem(request, 400, f"reason: {exc}")
        here = f"{pages.base(request)}/{inst}/records/{record['id']}"
        if form.get("confirm") != "yes":
            return pages.render(
                request,
                "record_confirm.html",
                instrument=inst,
                record=record,
                action=action,
                reason=reason,
                csrf=writer[1].csrf,
                here=here,
                family=self.pages.reader.family(inst, record),
            )
        try:
            self.pages.reader.set_lifecycle(inst, [str(record["id"])], reason)
        except BadQuery as exc:
            return pages.problem(request, 400, str(exc))
        logger.info(
            "UI: %s %s/%s by token %s", action, inst, record["id"], writer[0]
        )  # the reason is in the catalog, not in the log
        return RedirectResponse(f"{here}#history-title", status_code=303)

    def _refusal(self, request: Request) -> Response | None:
        """403 when this site cannot write at all (a local cache), else None."""
        pages = self.pages
        if pages.gate is None or not pages.reader.writes_lifecycle:
            return pages.problem(
                request,
                403,
                "Calibrations are retracted on the archive, not in a local cache: use the "
                "archive's record page, or koa-cal retract, then sync.",
            )
        return None


async def _read_form(request: Request) -> dict[str, Any]:
    """A small urlencoded form body.

    Raises
    ------
    FormRefused
        413 past :data:`MAX_ACTION_FORM_BYTES`, 400 when it is not such a form.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormRefused("Send the form from the record page.", 400)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ACTION_FORM_BYTES:
        raise FormRefused(_too_large(), 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_ACTION_FORM_BYTES:
            raise FormRefused(_too_large(), 413)
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise FormRefused("The form is not readable; send it from the record page.", 400) from None
    return {key: values[0] for key, values in pairs.items()}


def _too_large() -> str:
    return (
        f"The form is too large: a reason has at most {MAX_REASON_CHARS:,} characters; "
        "shorten it and send the form again."
    )

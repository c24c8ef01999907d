"""The explain page, ``/INST/explain``: what a selector chooses for a frame, and why.

Served by ``koa-cal ui`` only, where the pipeline's selectors live (the archive's
page says so). The frame is typed in a GET form (the URL is the permalink) or read
from an uploaded FITS header (a POST with the form's CSRF token; only the first
:data:`MAX_HEADER_BLOCKS` blocks of the file are read, until its ``END`` card).
The selection is the store's own explanation
(:meth:`~koa_middleware.cache.lifecycle.Lifecycle.explain`, through
:meth:`~.cache_reader.CacheReader.explain`): every candidate ranked, the choice
and why, the retracted candidates skipped. The page gives the same question as a
``koa-cal explain`` command line, and the choice as a run manifest to download.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidRecordError, KOAError
from ..fits_cards import BLOCK, HeaderRefused, read_primary_header
from ..fits_headers import header_metadata
from ..selector_options import accepted_options, format_days
from .explain_query import ExplainQuery, ExplainRefused, frame_fields, pin_manifest
from .form_body import BodyRefused, FormPart, FormToken, parse_multipart, read_body, read_form
from .local_tools import LocalTools

logger = logging.getLogger(__name__)

__all__ = ["MAX_HEADER_BLOCKS", "ExplainPages"]

#: 2880-byte blocks of an uploaded FITS file read at most (a header of 3,600 cards).
MAX_HEADER_BLOCKS = 100
#: Bytes of the header upload's body read at most: the blocks and the other fields.
MAX_HEADER_POST = MAX_HEADER_BLOCKS * BLOCK + (64 << 10)
#: Bytes of the "save as manifest" form of an uploaded header.
MAX_SAVE_FORM = 128 << 10


class ExplainPages:
    """The handlers of the explain page.

    Parameters
    ----------
    pages : Pages
        The site's pages (rendering, access, the reader).
    tools : LocalTools | None
        The selectors of ``koa-cal ui``; None on the archive, which explains nothing.
    """

    def __init__(self, pages: Any, tools: LocalTools | None):
        self.pages = pages
        self.tools = tools

    @property
    def _local(self) -> LocalTools:
        """The tools (the handlers answer before this on a site without them)."""
        return self.tools or LocalTools(selectors={})

    def _here(self, request: Request, inst: str) -> str:
        return f"{self.pages.base(request)}/{inst}/explain"

    def show(
        self, request: Request, inst: str, query: ExplainQuery | None, status: int = 200,
        **values: Any,
    ) -> Response:  # fmt: skip
        """The page: the forms (filled with ``query``), and a report when one is given."""
        token, new = FormToken.value(request)
        tools = self._local
        names = frame_fields(inst)
        selectors = [(name, accepted_options(cls)) for name, cls in tools.selectors.items()]
        response = self.pages.render(
            request,
            "explain.html",
            status=status,
            instrument=inst,
            here=self._here(request, inst),
            csrf=token,
            query=query or ExplainQuery(tools.selector_names()[0] if selectors else ""),
            fields=names,
            extra_text="\n".join(
                f"{k}={v}" for k, v in (query.frame if query else {}).items() if k not in names
            ),
            selectors=selectors,
            days=format_days,
            max_blocks=MAX_HEADER_BLOCKS,
            **values,
        )
        if new:
            FormToken.set_cookie(response, request, token, self.pages.base(request))
        return response

    def _unavailable(self, request: Request, inst: str) -> Response:
        return self.pages.problem(
            request,
            404,
            "Selections are explained where the pipeline's selectors live: run "
            f"koa-cal --instrument {inst} ui (with --selector MODULE:CLASS for your own) and "
            "open its explain page, or run koa-cal explain.",
        )

    def _explain(self, inst: str, query: ExplainQuery) -> tuple[dict[str, Any], Any]:
        """The store's explanation of ``query`` and the selector it used."""
        selector = query.selector(self._local)
        if not query.frame:
            raise ExplainRefused(
                "Give the frame's metadata (datetime_obs at least, and the columns the "
                "selector matches), or upload its FITS header."
            )
        try:
            report = self.pages.reader.explain(inst, query.frame, selector, query.as_of)
        except (KOAError, ValueError, TypeError) as exc:
            raise ExplainRefused(f"The selection cannot run: {exc}") from None
        except Exception as exc:  # a pipeline's selector may fail in any way: say so
            logger.exception("The selector %s failed on the explain page", query.selector_name)
            raise ExplainRefused(
                f"The selector {query.selector_name} failed ({type(exc).__name__}: {exc}); "
                "fix it, or run koa-cal explain with --debug to see where."
            ) from None
        return report, selector

    def _answer(self, request: Request, inst: str, query: ExplainQuery) -> Response:
        report, _ = self._explain(inst, query)
        names = frame_fields(inst)
        values: dict[str, Any] = {
            "report": report,
            "command": query.command_line(inst, self._local),
        }
        if query.header_file is None:
            values["params"] = query.params(names)  # the permalink's, and the download's
        else:
            values["frame_json"] = json.dumps(query.frame, sort_keys=True)
        return self.show(request, inst, query, **values)

    def get(self, request: Request) -> Response:
        """The form; with ``selector`` given, the explanation of the frame it describes."""
        refusal, inst = self.pages.guard(request)
        if refusal is not None:
            return refusal
        if self.tools is None:
            return self._unavailable(request, inst)
        params = request.query_params
        if "selector" not in params:
            return self.show(request, inst, None)
        query = None
        try:
            query = ExplainQuery.from_fields(params, frame_fields(inst))
            return self._answer(request, inst, query)
        except ExplainRefused as exc:
            return self.show(request, inst, query, 400, error=str(exc))

    async def post(self, request: Request) -> Response:
        """Explain the frame whose FITS header is uploaded (read up to its ``END`` card)."""
        refusal, inst = self.pages.guard(request)
        if refusal is not None:
            return refusal
        if self.tools is None:
            return self._unavailable(request, inst)
        query = None
        try:
            body, complete = await read_body(request, MAX_HEADER_POST, cut=True)
            fields = _by_name(parse_multipart(body, request.headers.get("content-type", ""),
                                              complete))  # fmt: skip
            if not FormToken.valid(request, fields["csrf"].text if "csrf" in fields else None):
                return self.show(
                    request, inst, None, 403, error="The form expired or came from another "
                    "site; the page is loaded again: choose the FITS file and send it once more."
                )  # fmt: skip
            plain = {k: p.text for k, p in fields.items() if p.filename is None and p.complete}
            query = ExplainQuery.selector_fields(plain)
            upload = fields.get("fits")
            if upload is None or not upload.filename:
                raise ExplainRefused("Choose the frame's FITS file to read its header.")
            query.header_file = _file_name(upload.filename)
            query.frame = _frame_from_header(upload, query.header_file)
            return await run_in_threadpool(self._answer, request, inst, query)
        except BodyRefused as exc:
            return self.show(request, inst, query, exc.status, error=str(exc))
        except ExplainRefused as exc:
            return self.show(request, inst, query, 400, error=str(exc))

    async def manifest(self, request: Request) -> Response:
        """The run manifest pinning the choice: a GET of the form, or a POST of a header's frame."""
        refusal, inst = self.pages.guard(request)
        if refusal is not None:
            return refusal
        if self.tools is None:
            return self._unavailable(request, inst)
        try:
            if request.method == "POST":
                form = await read_form(request, MAX_SAVE_FORM)
                if not FormToken.valid(request, form["csrf"].text if "csrf" in form else None):
                    return self.pages.problem(
                        request, 403, "The form expired or came from another site; explain "
                        "the frame again and save from that page."
                    )  # fmt: skip
                fields = {k: p.text for k, p in form.items()}
                query = ExplainQuery.selector_fields(fields)
                query.with_frame_json(fields.get("frame", ""))
            else:
                query = ExplainQuery.from_fields(request.query_params, frame_fields(inst))
            report, selector = await run_in_threadpool(self._explain, inst, query)
        except BodyRefused as exc:
            return self.pages.problem(request, exc.status, str(exc))
        except ExplainRefused as exc:
            return self.pages.problem(request, 400, str(exc))
        if report["chosen"] is None:
            return self.pages.problem(
                request, 400, f"The selector chose nothing, so there is nothing to pin: "
                f"{report['reason']}"
            )  # fmt: skip
        document = pin_manifest(inst, self.tools, query.frame, selector, report["chosen"])
        return Response(
            json.dumps(document, indent=1) + "\n",
            media_type="application/json",
            headers={
                "Content-Disposition": f'attachment; filename="{inst}_explain_manifest.json"',
                "Cache-Control": "no-store",
            },
        )


def _by_name(parts: list[FormPart]) -> dict[str, FormPart]:
    fields: dict[str, FormPart] = {}
    for part in parts:
        fields.setdefault(part.name, part)
    return fields


def _file_name(uploaded: str) -> str:
    """The uploaded file's own name (a browser may send a path), at most 200 characters."""
    return os.path.basename(str(uploaded).replace("\\", "/"))[:200] or "frame.fits"


def _frame_from_header(upload: FormPart, name: str) -> dict[str, Any]:
    """The frame's metadata from the primary header at the start of the upload.

    The header map is the default one, as a selector reads a FITS path (and as
    ``koa-cal explain --input`` does).
    """
    try:
        header = read_primary_header(upload.data, MAX_HEADER_BLOCKS)
    except HeaderRefused as exc:
        raise ExplainRefused(f"{name} is refused: {exc}") from None
    try:
        return header_metadata([header], name)
    except InvalidRecordError as exc:
        raise ExplainRefused(f"The header of {name} cannot be read as a frame: {exc}") from None

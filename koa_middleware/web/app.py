"""The pages as an ASGI application (Starlette), mounted by ``koa-archive`` and ``koa-cal ui``.

:func:`create_ui` builds the pages over a :class:`~.reader.CalibrationReader`; the
archive mounts them under ``/ui`` (outside its OpenAPI document), ``koa-cal ui``
serves :func:`create_local_site` (the same pages under ``/ui``, ``/`` leading there).

Routes, under the mount point: ``/`` (instruments), ``/INST/`` (overview),
``/INST/browse`` (and ``browse.csv``, ``browse.json``: the same query, every match),
``/INST/records/ID`` (:mod:`.record_page`; its retract and unretract forms:
:mod:`.record_actions`), ``/INST/files/ID``, ``/INST/changes?since=N``,
``/INST/timeline``, ``/INST/manifest`` (check a run manifest), ``/INST/explain``
(``koa-cal ui`` only), ``/login``, ``/logout``,
``/static/...``. Every answer carries ``Content-Security-Policy: default-src 'self'``.

Examples
--------
>>> app.mount("/ui", create_ui(CatalogReader(catalog, ["hispec"])))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .column_filters import filterable
from .coverage import build_coverage
from .explain_pages import ExplainPages
from .local_tools import LocalTools
from .manifest_pages import ManifestPages
from .page_turns import PageTurns
from .reader import BadQuery, BrowseQuery, CalibrationReader, decode_key, profile_gap_nights
from .record_actions import RecordActions
from .record_page import RecordPages
from .rendering import CSV_COLUMNS, csv_line, environment, query_url
from .sessions import LOGIN_COOKIE, SESSION_COOKIE, TokenGate, same
from .timeline_page import TimelinePage

logger = logging.getLogger(__name__)

__all__ = ["CSP", "create_local_site", "create_ui"]

#: The policy every answer carries: nothing from another origin, no inline script.
CSP = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
STATIC_DIR = Path(__file__).parent / "static"
#: Rows of a browse page by default, and at most.
PAGE_ROWS, MAX_PAGE_ROWS = 50, 500
#: Rows read per step while streaming the CSV or JSON twin.
EXPORT_STEP = 1000
#: Changes per page of the activity list.
CHANGES_ROWS = 100
#: Nights of the coverage map by default (the gap threshold is the profile's ``gap_nights``).
COVERAGE_NIGHTS = 120
#: Bytes of a login form body read at most.
MAX_FORM_BYTES = 8192


class SecurityHeaders:
    """ASGI middleware: add the CSP and its companions to every answer."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in _HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = kept + _HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Pages:
    """The page handlers, sharing a reader, the templates and the access rule.

    Parameters
    ----------
    reader : CalibrationReader
        Where records come from.
    gate : TokenGate | None
        The archive's read rule; None: every page is open (a local cache).
    site : str
        Named in the title and header: ``"archive"`` or ``"local cache"``.
    """

    def __init__(self, reader: CalibrationReader, gate: TokenGate | None, site: str):
        self.reader = reader
        self.gate = gate
        self.site = site
        self.env = environment()

    # -- rendering and access --------------------------------------------------------

    def base(self, request: Request) -> str:
        """Where the pages are mounted (``/ui``)."""
        return str(request.scope.get("root_path", "")).rstrip("/")

    def render(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        """Render template ``name`` with what every page shows."""
        viewer = getattr(request.state, "viewer", None)
        html = self.env.get_template(name).render(
            base=self.base(request),
            site=self.site,
            viewer=viewer[0] if viewer else None,
            logout_csrf=viewer[1].csrf if viewer else None,
            login_needed=self.gate is not None and not self.gate.open_reads,
            **values,
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def problem(self, request: Request, status: int, message: str) -> Response:
        """An error page saying what went wrong and what to do."""
        return self.render(
            request, "error.html", status=status, status_code=status, message=message
        )

    def refused(self, request: Request) -> Response | None:
        """The login page (401) when this browser may not read, else None."""
        if self.gate is None:
            return None
        found = self.gate.viewer(request.cookies.get(SESSION_COOKIE))
        if found is not None:
            request.state.viewer = found
            return None
        if self.gate.open_reads:  # anyone reads; a login only adds writing
            return None
        return self.login_form(request, status=401, wanted=request.url.path)

    def instrument(self, request: Request) -> str | None:
        """The path's instrument when this source serves it."""
        name = str(request.path_params["instrument"]).lower()
        return name if name in self.reader.instruments() else None

    def guard(self, request: Request) -> tuple[Response | None, str]:
        """Check access and the instrument: ``(refusal or None, instrument)``."""
        refusal = self.refused(request)
        if refusal is not None:
            return refusal, ""
        name = self.instrument(request)
        if name is None:
            known = ", ".join(self.reader.instruments()) or "none"
            shown = str(request.path_params["instrument"])[:40]
            return self.problem(
                request, 404, f"Unknown instrument {shown!r}: this site serves {known}."
            ), ""
        return None, name

    # -- pages -----------------------------------------------------------------------

    def home(self, request: Request) -> Response:
        """The instruments, each with its record counts."""
        refusal = self.refused(request)
        if refusal is not None:
            return refusal
        rows = []
        for name in self.reader.instruments():
            counts = self.reader.counts(name)
            rows.append((name, sum(c.live for c in counts), sum(c.retracted for c in counts)))
        return self.render(request, "home.html", instruments=rows)

    def overview(self, request: Request) -> Response:
        """Records per cal_type and origin, the newest of each type, the coverage map."""
        refusal, inst = self.guard(request)
        if refusal is not None:
            return refusal
        try:
            coverage = self._coverage(request, inst)
        except BadQuery as exc:
            return self.problem(request, 400, str(exc))
        return self.render(
            request,
            "overview.html",
            instrument=inst,
            counts=self.reader.counts(inst),
            newest=self.reader.newest(inst),
            coverage=coverage,
        )

    def _coverage(self, request: Request, inst: str) -> Any:
        params = request.query_params
        gap = _int_param(params.get("gap_nights"), "gap_nights", profile_gap_nights(inst), 0, 365)
        span = self.reader.time_span(inst)
        if span is None:
            return None
        query = BrowseQuery.parse(
            {k: params.get(k, "") for k in ("date_time_start", "date_time_end")}
        )
        end = query.filters.get("date_time_end", span[1])[:10]
        default_start = date.fromisoformat(end) - timedelta(days=COVERAGE_NIGHTS - 1)
        start = query.filters.get("date_time_start", default_start.isoformat())[:10]
        if start > end:
            raise BadQuery("date_time_start must come before date_time_end.")
        nights = self.reader.nights(inst, start + "T00:00:00.000", end + "T23:59:59.999")
        return build_coverage(nights, start, end, gap)

    def browse(self, request: Request) -> Response:
        """A sortable, filterable table of records, one keyset page at a time."""
        refusal, inst = self.guard(request)
        if refusal is not None:
            return refusal
        params = request.query_params
        columns = self.reader.column_names(inst)
        try:
            query = BrowseQuery.parse(params, columns)
            limit = _int_param(params.get("limit"), "limit", PAGE_ROWS, 1, MAX_PAGE_ROWS)
            after = decode_key(params["after"]) if params.get("after") else None
            page = self.reader.page(inst, query, after, limit)
            total = self.reader.count(inst, query)
        except BadQuery as exc:
            return self.problem(request, 400, str(exc))
        api = getattr(self.reader, "api_prefix", None)
        return self.render(
            request,
            "browse.html",
            instrument=inst,
            query=query,
            page=page,
            total=total,
            limit=limit,
            after=params.get("after"),
            columns=filterable(columns),
            api_query=query_url(f"{api}/{inst}/query", query.api_params()) if api else None,
        )

    def export(self, request: Request) -> Response:
        """Every record of a browse query, as CSV or JSON (the page's twin)."""
        refusal, inst = self.guard(request)
        if refusal is not None:
            return refusal
        try:
            query = BrowseQuery.parse(request.query_params, self.reader.column_names(inst))
        except BadQuery as exc:
            return self.problem(request, 400, str(exc))
        as_csv = request.url.path.endswith(".csv")
        chunks = self._csv(inst, query) if as_csv else self._json(inst, query)
        kind = "text/csv; charset=utf-8" if as_csv else "application/json"
        name = f"{inst}_calibrations.{'csv' if as_csv else 'json'}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return StreamingResponse(chunks, media_type=kind, headers=headers)

    def _all(self, inst: str, query: BrowseQuery) -> Iterator[dict[str, Any]]:
        after = None
        while True:
            page = self.reader.page(inst, query, after, EXPORT_STEP)
            yield from page.records
            if page.next_key is None:
                return
            after = decode_key(page.next_key)

    def _csv(self, inst: str, query: BrowseQuery) -> Iterator[str]:
        yield csv_line(list(CSV_COLUMNS))
        for record in self._all(inst, query):
            yield csv_line([record.get(name) for name in CSV_COLUMNS])

    def _json(self, inst: str, query: BrowseQuery) -> Iterator[str]:
        yield '{"records": ['
        for n, record in enumerate(self._all(inst, query)):
            yield ("," if n else "") + json.dumps(record, default=str)
        yield "]}"

    def changes(self, request: Request) -> Response:
        """The changes feed from ``since``, with a permalink to each step."""
        refusal, inst = self.guard(request)
        if refusal is not None:
            return refusal
        try:
            since = _int_param(request.query_params.get("since"), "since", 0, 0, 2**63 - 1)
        except BadQuery as exc:
            return self.problem(request, 400, str(exc))
        page = self.reader.changes(inst, since, CHANGES_ROWS)
        return self.render(request, "changes.html", instrument=inst, since=since, page=page)

    # -- login -----------------------------------------------------------------------

    def login_form(self, request: Request, status: int = 200, wanted: str = "", error: str = ""):
        """The login page, with a fresh double-submit CSRF value in a cookie and the form."""
        if self.gate is None:
            return RedirectResponse(self.base(request) + "/", status_code=303)
        csrf = secrets.token_urlsafe(32)
        response = self.render(
            request,
            "login.html",
            status=status,
            csrf=csrf,
            wanted=_local_path(wanted or request.query_params.get("next", ""), self.base(request)),
            error=error,
        )
        _set_cookie(response, request, LOGIN_COOKIE, csrf, f"{self.base(request)}/login")
        return response

    async def login(self, request: Request) -> Response:
        """Check the token; on success start a session and go to the page asked for."""
        if self.gate is None:
            return RedirectResponse(self.base(request) + "/", status_code=303)
        form = await _form(request)
        if form is None or not same(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
            return self.problem(
                request, 403, "The login form expired or came from elsewhere; open it again."
            )
        token = (form.get("token") or "").strip()
        found = self.gate.check(token) if token else None
        if found is None:
            return self.login_form(
                request, 401, form.get("next", ""), "That token is unknown or revoked."
            )
        sid = self.gate.sessions.open(token)
        target = _local_path(form.get("next", ""), self.base(request))
        response = RedirectResponse(target, status_code=303)
        _set_cookie(response, request, SESSION_COOKIE, sid, self.base(request) + "/")
        response.delete_cookie(LOGIN_COOKIE, path=f"{self.base(request)}/login")
        logger.info("UI session opened for token %s", found[0])
        return response

    async def logout(self, request: Request) -> Response:
        """End the session (a POST carrying the session's CSRF token)."""
        base = self.base(request)
        if self.gate is None:
            return RedirectResponse(base + "/", status_code=303)
        sid = request.cookies.get(SESSION_COOKIE)
        session = self.gate.sessions.get(sid)
        form = await _form(request)
        if session is None or form is None or not same(form.get("csrf"), session.csrf):
            return self.problem(request, 403, "The logout form expired; open a page and retry.")
        self.gate.sessions.close(sid)
        response = RedirectResponse(base + "/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=base + "/")
        return response


def _int_param(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or not value.strip():
        return default
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise BadQuery(f"{name} must be a whole number from {low} to {high}.")
    number = int(text)
    if not low <= number <= high:
        raise BadQuery(f"{name} must be a whole number from {low} to {high}.")
    return number


def _local_path(target: str, base: str) -> str:
    """``target`` when it is a page of this site, else the site's first page (no open redirect)."""
    if target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return base + "/"


def _set_cookie(response: Response, request: Request, name: str, value: str, path: str) -> None:
    response.set_cookie(
        name,
        value,
        path=path,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


async def _form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form body, or None when it is too large or not one."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {key: values[0] for key, values in pairs.items()}


def create_ui(
    reader: CalibrationReader,
    gate: TokenGate | None = None,
    site: str = "archive",
    tools: LocalTools | None = None,
) -> ASGIApp:
    """Build the pages over ``reader``, to be mounted (the archive mounts them at ``/ui``).

    Parameters
    ----------
    reader : CalibrationReader
        The catalog or a local cache.
    gate : TokenGate | None
        The archive's read rule; None opens every page (a local cache on 127.0.0.1).
    site : str
        What the pages call the source: ``"archive"`` or ``"local cache"``.
    tools : LocalTools | None
        ``koa-cal ui``'s selectors and manifests folder (explain and pick a manifest).

    Returns
    -------
    ASGI application
        With :data:`CSP` and its companion headers on every answer.
    """
    pages = Pages(reader, gate, site)
    record, actions = RecordPages(pages), RecordActions(pages)
    manifests = ManifestPages(pages, tools)
    explain = ExplainPages(pages, tools)
    turn = PageTurns()
    routes = [
        Route("/", turn(pages.home), methods=["GET"]),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        Route("/{instrument}/", turn(pages.overview), methods=["GET"]),
        Route("/{instrument}/browse", turn(pages.browse), methods=["GET"]),
        Route("/{instrument}/browse.csv", pages.export, methods=["GET"]),
        Route("/{instrument}/browse.json", pages.export, methods=["GET"]),
        Route("/{instrument}/records/{cal_id}", turn(record.show), methods=["GET"]),
        Route("/{instrument}/records/{cal_id}/retract", actions.retract, methods=["POST"]),
        Route("/{instrument}/records/{cal_id}/unretract", actions.unretract, methods=["POST"]),
        Route("/{instrument}/files/{cal_id}", record.file, methods=["GET"]),
        Route("/{instrument}/changes", turn(pages.changes), methods=["GET"]),
        Route("/{instrument}/timeline", turn(TimelinePage(pages).render), methods=["GET"]),
        Route("/{instrument}/manifest", turn(manifests.get), methods=["GET"]),
        Route("/{instrument}/manifest", manifests.post, methods=["POST"]),
        Route("/{instrument}/explain", turn(explain.get), methods=["GET"]),
        Route("/{instrument}/explain", explain.post, methods=["POST"]),
        Route("/{instrument}/explain.json", explain.manifest, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes)

    async def not_found(request: Request, exc: Exception) -> Response:
        return pages.problem(request, 404, "No such page; start from the list of instruments.")

    app.add_exception_handler(404, not_found)
    return SecurityHeaders(app)


def create_local_site(reader: CalibrationReader, tools: LocalTools | None = None) -> ASGIApp:
    """The pages of a local cache for ``koa-cal ui``: under ``/ui``, ``/`` leading there.

    ``tools`` gives the explain page its selectors and the manifest page its folder.
    """

    async def to_pages(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=307)

    app = Starlette(
        routes=[
            Route("/", to_pages, methods=["GET"]),
            Mount("/ui", app=create_ui(reader, None, "local cache", tools or LocalTools())),
        ]
    )
    return SecurityHeaders(app)

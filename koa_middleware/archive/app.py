"""The archive's HTTP application (FastAPI): every route of PROTOCOL.md, v1 and v2.

Routes live under ``/api/calibrations``: the v1 router (:mod:`.routes_v1`) and,
for protocol 2, the v2 router (:mod:`.routes_v2`). ``create_app`` builds the app for one
:class:`ArchiveSettings`; with ``protocol=1`` only the v1 routes exist, and
records carry no ``seq``, like the Keck service today.

The calibrations' web pages (:mod:`koa_middleware.web`) are mounted under ``/ui``,
outside the OpenAPI document; where reading needs a token, so do they (a login page).

``GET /api/calibrations`` itself lists the protocol's routes, so that someone
who points a browser or ``curl`` at the API's root learns where it lives.

Examples
--------
>>> app = create_app(ArchiveSettings(root=Path("/tmp/archive")))  # doctest: +SKIP
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .. import __version__
from . import routes_v1, routes_v2
from .catalog import Catalog
from .http_errors import install_error_handlers
from .openapi import build_openapi
from .state import API_PREFIX, Archive, ArchiveSettings
from .storage import LocalFileStorage
from .storage_interface import FileStorage
from .tokens import scope_allows

logger = logging.getLogger(__name__)

__all__ = ["API_PREFIX", "ArchiveSettings", "create_app"]


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

    Raises
    ------
    ValueError
        If ``settings.protocol`` is neither 1 nor 2.

    Examples
    --------
    >>> app = create_app(ArchiveSettings(root=Path("/tmp/archive"), protocol=1))  # doctest: +SKIP
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
    app.include_router(routes_v1.router)
    if settings.protocol == 2:
        app.include_router(routes_v2.router)
    for path in (API_PREFIX, API_PREFIX + "/"):
        app.add_api_route(path, route_index, methods=["GET"], include_in_schema=False)
    app.mount("/ui", _pages(app.state.archive), name="ui")
    app.openapi = lambda: build_openapi(app, settings.protocol)  # type: ignore[method-assign]
    return app


def _pages(archive: Archive):
    """The web pages over the archive's catalog, reading as its tokens allow."""
    from ..web import TokenGate, create_ui
    from ..web.catalog_reader import CatalogReader

    def check(secret: str) -> tuple[str, str] | None:
        found = archive.tokens.check(secret)
        return found if found is not None and scope_allows(found[1], "read") else None

    settings = archive.settings
    reader = CatalogReader(
        archive.catalog, settings.instruments, API_PREFIX, settings.protocol, archive.storage
    )
    return create_ui(reader, TokenGate(check, open_reads=settings.anonymous_read), "archive")


async def route_index(request: Request) -> JSONResponse:
    """``GET /api/calibrations``: the protocol's routes, each with its methods.

    It reads nothing of the catalog, so it needs no token (like ``healthz``).

    Returns
    -------
    JSONResponse
        ``{"protocol": 1 or 2, "routes": [{"path", "methods"}, ...], "openapi":
        "/openapi.json"}``, the routes sorted by path.
    """
    archive = request.app.state.archive
    # The documented routes: the schema is built once and cached on the app.
    paths = request.app.openapi().get("paths", {})
    listed = [
        {"path": path, "methods": sorted(method.upper() for method in paths[path])}
        for path in sorted(paths)
        if path.startswith(API_PREFIX + "/")
    ]
    return JSONResponse(
        {
            "protocol": archive.settings.protocol,
            "routes": listed,
            "openapi": "/openapi.json",
            "instrument": "replace {instrument} with an instrument name, e.g. hispec",
        }
    )

"""Who may do what: bearer tokens checked against the catalog, per route scope."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .problems import (
    Forbidden,
    NotFound,
    Unauthorized,
)
from .state import Archive
from .tokens import scope_allows

logger = logging.getLogger(__name__)


bearer = HTTPBearer(auto_error=False, description="A token from `koa-archive token create`")


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
        authorize(self.archive, self.request, self.needed)
        name = self.instrument.lower()
        if name not in self.archive.settings.instruments:
            raise NotFound(
                f"Unknown instrument {self.instrument!r}: this archive serves "
                f"{', '.join(self.archive.settings.instruments)}."
            )
        return name


def access_dependency(needed: str) -> Callable[..., Awaitable[Access]]:
    """A dependency that hands the route an :class:`Access` needing scope ``needed``."""

    async def dependency(
        request: Request,
        instrument: str = PathParam(description="Instrument name, lower case (e.g. hispec)"),
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> Access:
        return Access(request.app.state.archive, request, needed, instrument)

    return dependency


def authorize(archive: Archive, request: Request, needed: str) -> None:
    """Check the request's bearer token against the catalog for scope ``needed``.

    Raises
    ------
    Unauthorized
        No token (unless anonymous reading is on and ``needed`` is ``read``), a
        malformed header, or an unknown or revoked token.
    Forbidden
        The token's scope is below ``needed``.
    """
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


read_access = access_dependency("read")
write_access = access_dependency("write")

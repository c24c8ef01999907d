"""API tokens of the archive: created, listed, revoked and checked, stored hashed.

A token is ``koa_`` followed by 43 random URL-safe characters. Only its
SHA-256 is kept in the catalog (tokens carry 256 random bits, so a plain hash
cannot be reversed), which lets every archive process sharing the catalog
check tokens without ever storing one.

Examples
--------
>>> tokens = TokenStore(catalog.engine)  # doctest: +SKIP
>>> secret = tokens.create("ci", "write")  # doctest: +SKIP
>>> tokens.check(secret)  # doctest: +SKIP
('ci', 'write')
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..errors import ConfigurationError
from ..records import utc_now
from .schema import tokens

logger = logging.getLogger(__name__)

__all__ = ["SCOPES", "TokenInfo", "TokenStore", "scope_allows"]

#: Scopes from least to most powerful; each includes those before it.
SCOPES = ("read", "write", "admin")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,128}\Z")
# Checked on every request: built once, so that only the parameter changes.
_CHECK = sa.select(tokens.c.name, tokens.c.scope).where(
    tokens.c.token_hash == sa.bindparam("token_hash")
)


def scope_allows(granted: str, needed: str) -> bool:
    """Return True when a token of scope ``granted`` may do what needs ``needed``.

    Examples
    --------
    >>> scope_allows("write", "read"), scope_allows("read", "write")
    (True, False)
    """
    return SCOPES.index(granted) >= SCOPES.index(needed)


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: its name, scope and creation time (never the secret)."""

    name: str
    scope: str
    created: str


class TokenStore:
    """The tokens table of a catalog database.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        The catalog's engine.
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self, name: str | None, scope: str) -> str:
        """Create a token and return its secret (shown once, stored only hashed).

        Parameters
        ----------
        name : str | None
            A unique name (letters, digits, ``_.@-``); default ``<scope>-<random>``.
        scope : str
            ``read``, ``write`` or ``admin``.

        Raises
        ------
        ConfigurationError
            If the scope or name is invalid or the name is taken.
        """
        if scope not in SCOPES:
            raise ConfigurationError(f"Unknown scope {scope!r}: use one of {', '.join(SCOPES)}.")
        name = name or f"{scope}-{secrets.token_hex(4)}"
        if not _NAME_RE.match(name):
            raise ConfigurationError(
                f"Invalid token name {name!r}: use up to 128 letters, digits or _.@-"
            )
        secret = "koa_" + secrets.token_urlsafe(32)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    tokens.insert().values(
                        name=name, token_hash=hash_token(secret), scope=scope, created=utc_now()
                    )
                )
        except sa.exc.IntegrityError:
            raise ConfigurationError(
                f"A token named {name!r} exists already: choose another name or revoke it first."
            ) from None
        logger.info("Created %s token %r", scope, name)
        return secret

    def check(self, secret: str) -> tuple[str, str] | None:
        """Return ``(name, scope)`` of a valid token, or None for an unknown or revoked one."""
        with self.engine.connect() as conn:
            row = conn.execute(_CHECK, {"token_hash": hash_token(secret)}).first()
        return None if row is None else (row.name, row.scope)

    def list(self) -> list[TokenInfo]:
        """Return every token's name, scope and creation time, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(tokens.c.name, tokens.c.scope, tokens.c.created).order_by(
                    tokens.c.created, tokens.c.name
                )
            )
            return [TokenInfo(row.name, row.scope, row.created) for row in rows]

    def revoke(self, name: str) -> bool:
        """Delete the token named ``name``; return False when there was none."""
        with self.engine.begin() as conn:
            deleted = conn.execute(tokens.delete().where(tokens.c.name == name)).rowcount
        if deleted:
            logger.info("Revoked token %r", name)
        return bool(deleted)

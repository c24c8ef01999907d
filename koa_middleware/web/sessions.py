"""Who may read the pages of a token-protected archive: login sessions and CSRF tokens.

Where the archive allows anonymous reads, pages are open. Otherwise the login
page takes a token, checks it against the archive's tokens, and sets a cookie
holding a random session id (HttpOnly, ``SameSite=Strict``, ``Secure`` over
HTTPS). The token stays in this process's memory, never in the browser, and is
checked again on every page, so a revoked token ends its sessions. Every form
that changes state carries a CSRF token: the login form a random value also set in
a cookie (double submit), the logout form the session's own.

Examples
--------
>>> gate = TokenGate(check=lambda token: ("alice", "read") if token == "s3cret" else None)
>>> sid = gate.sessions.open("s3cret")
>>> gate.viewer(sid) is not None
True
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

__all__ = ["SESSION_COOKIE", "LOGIN_COOKIE", "Session", "SessionStore", "TokenGate", "same"]

SESSION_COOKIE = "koa_ui_session"
LOGIN_COOKIE = "koa_ui_login"
#: How long a session lasts without use, in seconds.
SESSION_SECONDS = 8 * 3600
#: Sessions kept at most; the oldest go first.
MAX_SESSIONS = 10_000
_SCOPES = {"read": 1, "write": 2, "admin": 3}


def same(a: str | None, b: str | None) -> bool:
    """Compare two secrets in constant time; a missing one never matches."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


@dataclass
class Session:
    """A logged-in browser: the token (server side only), who, and its CSRF token."""

    token: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    seen: float = field(default_factory=time.monotonic)


class SessionStore:
    """Sessions by their random id, in this process's memory."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, token: str) -> str:
        """Start a session for ``token``; return its id (the cookie's value)."""
        sid = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda key: self._sessions[key].seen)
                del self._sessions[oldest]
            self._sessions[sid] = Session(token)
        return sid

    def get(self, sid: str | None) -> Session | None:
        """The live session of ``sid``, or None (unknown or expired)."""
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            now = time.monotonic()
            if now - session.seen > SESSION_SECONDS:
                del self._sessions[sid]
                return None
            session.seen = now
            return session

    def close(self, sid: str | None) -> None:
        """End a session (logout)."""
        with self._lock:
            self._sessions.pop(sid or "", None)


@dataclass
class TokenGate:
    """The archive's read rule for the pages.

    Parameters
    ----------
    check : callable
        Token -> ``(name, scope)``, or None for an unknown or revoked token.
    open_reads : bool
        The archive allows anonymous reads: pages need no login.
    """

    check: Callable[[str], tuple[str, str] | None]
    open_reads: bool = False
    sessions: SessionStore = field(default_factory=SessionStore)

    def viewer(self, sid: str | None) -> tuple[str, Session] | None:
        """The token's name and session of a browser allowed to read, else None."""
        session = self.sessions.get(sid)
        if session is None:
            return None
        found = self.check(session.token)
        if found is None or _SCOPES.get(found[1], 0) < _SCOPES["read"]:
            self.sessions.close(sid)  # revoked since: the session ends with it
            return None
        return found[0], session

    def writer(self, sid: str | None) -> tuple[str, Session] | None:
        """The token's name and session of a browser whose token may write, else None.

        Checked on every request, like :meth:`viewer`: a token revoked or lowered to
        ``read`` since the login writes no more.
        """
        session = self.sessions.get(sid)
        if session is None:
            return None
        found = self.check(session.token)
        if found is None or _SCOPES.get(found[1], 0) < _SCOPES["write"]:
            return None
        return found[0], session

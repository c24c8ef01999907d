"""A stand-in for the Keck login service and one cookie-protected calibrations route.

It runs on :class:`~support.scripted_http.ScriptedHTTPServer` (real HTTP on
127.0.0.1) and checks every request the way the Keck service expects it:

1. ``GET /login/script?email=E&password=P&url=BASE`` (exactly these query
   parameters, ``url`` being the service's own base URL) answers 200
   ``{"py_uid": <random>}`` for the right account, else 401 ``{"comment": ...}``;
   with :attr:`KeckService.require_verification` the comment asks for an
   emailed verification code; with :attr:`KeckService.redirect_login` it
   answers 302 to ``/login/elsewhere``, which would hand out a session to a
   client that followed it.
2. ``GET /userinfo/odb-cookie`` with cookie ``KECK-AUTH-UID=<live py_uid>``
   answers 200 ``{"Id": <observer id>}``, else 401.
3. ``GET /api/calibrations/hispec/lastUpdated`` wants cookie
   ``observer=obsid=<base64 of the Id>`` while the observer has a live session.

Requests that break these rules are answered 400 and listed in
:attr:`KeckService.violations`.

Hostile answers, for the client's bounds: :attr:`KeckService.login_mode`
(step 1, to the right account) and :attr:`KeckService.userinfo_mode` (step 2,
to a live session) take one of :data:`HOSTILE_MODES`:

``"huge"``          a valid answer padded to :data:`HUGE_ANSWER_BYTES`, its length declared
``"huge_streamed"`` the same without a Content-Length, streamed until the connection closes
``"deep"``          a valid answer that also holds arrays nested :data:`DEEP_LEVELS` deep
                    (well within the size bound)
``"non_ascii"``     step 1 only: a ``py_uid`` with non-ASCII characters
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

from support.scripted_http import Exchange, ScriptedHTTPServer

__all__ = [
    "configured_keck_service",
    "API_PATH",
    "DEEP_LEVELS",
    "HOSTILE_MODES",
    "HUGE_ANSWER_BYTES",
    "KeckService",
    "LAST_UPDATED",
    "VERIFICATION_COMMENT",
    "client_log_text",
    "parse_cookies",
]

LAST_UPDATED = "Thu, 12 Feb 2026 00:00:00 GMT"
#: The hostile answers the service can give (see the module's documentation).
HOSTILE_MODES = ("huge", "huge_streamed", "deep", "non_ascii")
#: The size of a "huge" answer: far beyond any login answer.
HUGE_ANSWER_BYTES = 8 << 20
#: How deep a "deep" answer nests: beyond Python's recursion limit, in under 64 KiB.
DEEP_LEVELS = 20_000
VERIFICATION_COMMENT = "A verification code was sent to your email; enter it to log in."
API_PATH = "/api/calibrations/hispec/lastUpdated"


def parse_cookies(header: str) -> dict[str, str]:
    """Split a ``Cookie`` header into names and values (a value may hold ``=``)."""
    pairs = (part.strip().split("=", 1) for part in header.split(";") if "=" in part)
    return {name: value for name, value in pairs}


class KeckService:
    """The Keck login service for one observer account, with a calibrations route.

    Parameters
    ----------
    email, password : str
        The only account it accepts.

    Attributes
    ----------
    observer_id : int
        The observer ``Id`` of the account.
    logins : int
        Successful step-1 logins.
    validations : int
        Step-2 requests (``/userinfo/odb-cookie``), successful or not.
    violations : list[str]
        Requests that broke the protocol.
    """

    def __init__(self, email: str, password: str):
        self.email = email
        self.password = password
        self.observer_id = 1_000_000_000 + secrets.randbelow(9_000_000_000)
        self.logins = 0
        self.validations = 0
        self.violations: list[str] = []
        self.require_verification = False
        self.redirect_login = False
        #: A hostile step-1 answer (one of HOSTILE_MODES), or None.
        self.login_mode: str | None = None
        #: A hostile step-2 answer (one of HOSTILE_MODES but "non_ascii"), or None.
        self.userinfo_mode: str | None = None
        self.uids: set[str] = set()
        self._all_uids: set[str] = set()
        self._lock = threading.Lock()
        self.server = ScriptedHTTPServer()
        self.server.route("GET", "/login/script", self._login)
        self.server.route("GET", "/login/elsewhere", self._elsewhere)
        self.server.route("GET", "/userinfo/odb-cookie", self._userinfo)
        self.server.route("GET", API_PATH, self._last_updated)

    # -- what tests use ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The service's base URL (``KECK``), ``http://127.0.0.1:PORT``."""
        return self.server.url

    @property
    def api_url(self) -> str:
        """The calibrations API's base URL on this service."""
        return self.server.url + "/api/calibrations"

    @property
    def observer_cookie(self) -> str:
        """The value the ``observer`` cookie must have."""
        return "obsid=" + base64.b64encode(str(self.observer_id).encode()).decode()

    @property
    def paths(self) -> list[str]:
        """The path of every request so far, in order."""
        return [exchange.path for exchange in self.server.exchanges]

    def drop_sessions(self) -> None:
        """Forget every session: kept ``py_uid`` values and observer cookies stop working."""
        with self._lock:
            self.uids.clear()

    def secrets_in(self, text: str) -> list[str]:
        """Return which of the account's secrets (and session values) occur in ``text``.

        The email and password are looked for as they are and as a query string holds them.
        """
        values = {"password": self.password, "email": self.email}
        values["password as sent"] = quote_plus(self.password)
        values["email as sent"] = quote_plus(self.email)
        values["observer cookie"] = self.observer_cookie.split("=", 1)[1]
        values["observer id"] = str(self.observer_id)
        with self._lock:
            values.update({f"py_uid {uid[:4]}": uid for uid in self._all_uids})
        return sorted(name for name, value in values.items() if value and value in text)

    def __enter__(self) -> KeckService:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    # -- the routes ----------------------------------------------------------------------

    def _refuse(self, ex: Exchange, problem: str) -> None:
        with self._lock:
            self.violations.append(f"{ex.method} {ex.path}: {problem}")
        ex.send(400, json.dumps({"comment": problem}).encode())

    def _login(self, ex: Exchange) -> None:
        if ex.body:
            return self._refuse(ex, "a request body")
        if sorted(ex.query) != ["email", "password", "url"]:
            return self._refuse(ex, f"query parameters {sorted(ex.query)}")
        if any(len(values) != 1 for values in ex.query.values()):
            return self._refuse(ex, "a repeated query parameter")
        if ex.query["url"] != [self.base_url]:
            return self._refuse(ex, "url is not the service's base URL")
        if self.redirect_login:
            return ex.send(302, b"", headers={"Location": self.base_url + "/login/elsewhere"})
        if ex.query["email"] != [self.email] or ex.query["password"] != [self.password]:
            return ex.send(401, json.dumps({"comment": "Invalid email or password."}).encode())
        if self.require_verification:
            return ex.send(401, json.dumps({"comment": VERIFICATION_COMMENT}).encode())
        answer = {"py_uid": self._new_uid(), "status": "ok"}
        if self.login_mode == "non_ascii":
            answer["py_uid"] = "sesi\u00f3n-" + answer["py_uid"]
            with self._lock:
                self._all_uids.add(answer["py_uid"])
        self._answer(ex, answer, self.login_mode)

    def _answer(self, ex: Exchange, answer: dict[str, Any], mode: str | None) -> None:
        """Send ``answer`` as JSON, made hostile as ``mode`` says."""
        if mode == "deep":
            answer = {**answer, "extra": "@DEEP@"}
            body = json.dumps(answer).encode()
            body = body.replace(b'"@DEEP@"', b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS)
            return ex.send(200, body)
        if mode not in ("huge", "huge_streamed"):
            return ex.send(200, json.dumps(answer).encode())
        padding = HUGE_ANSWER_BYTES - len(json.dumps(answer)) - 20
        body = json.dumps({**answer, "pad": "x" * padding}).encode()
        if mode == "huge":
            try:
                ex.send(200, body)
            except OSError:
                ex.hang_up()  # the client stopped reading: what a bounded client does
            return
        handler = ex.handler
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            for start in range(0, len(body), 1 << 16):
                handler.wfile.write(body[start : start + (1 << 16)])
        except OSError:
            pass  # the client stopped reading: what a bounded client does
        ex.hang_up()

    def _elsewhere(self, ex: Exchange) -> None:
        # A client that followed the redirect would get a session here.
        ex.send(200, json.dumps({"py_uid": self._new_uid()}).encode())

    def _new_uid(self) -> str:
        uid = secrets.token_hex(16)
        with self._lock:
            self.logins += 1
            self.uids.add(uid)
            self._all_uids.add(uid)
        return uid

    def _userinfo(self, ex: Exchange) -> None:
        with self._lock:
            self.validations += 1
            live = parse_cookies(ex.headers.get("cookie", "")).get("KECK-AUTH-UID") in self.uids
        if ex.query or ex.body:
            return self._refuse(ex, "a query or body on odb-cookie")
        if not live:
            return ex.send(401, json.dumps({"comment": "Not logged in."}).encode())
        answer: dict[str, Any] = {"Id": self.observer_id, "FirstName": "Ada", "Type": "observer"}
        self._answer(ex, answer, self.userinfo_mode)

    def _last_updated(self, ex: Exchange) -> None:
        cookies = parse_cookies(ex.headers.get("cookie", ""))
        with self._lock:
            live = bool(self.uids)
        if cookies.get("observer") != self.observer_cookie or not live:
            return ex.send(
                401, json.dumps({"error": "unauthorized", "message": "Log in."}).encode()
            )
        ex.send(200, json.dumps({"last_updated": LAST_UPDATED}).encode())


def client_log_text(records: list) -> str:
    """The log lines of ``records`` that the client side wrote (not this stand-in's server).

    The stand-in's own access log (logger ``support.scripted_http``) shows
    request lines as a server's log would, query string included.
    """
    lines = []
    for record in records:
        if record.name.startswith("support."):
            continue
        lines.append(f"{record.name} {record.levelname} {record.getMessage()}")
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(lines)


@contextlib.contextmanager
def configured_keck_service(
    monkeypatch, tmp_path, email: str, password: str
) -> Iterator[KeckService]:
    """A running :class:`KeckService`, with the observer login of the environment set for it,
    a state folder of the test's own, and no other credential; checks no request broke
    the service's rules."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for name in ("KOA_API_TOKEN", "KOA_CALIBRATIONS_URL", "KECK_LOGIN_URL"):
        monkeypatch.delenv(name, raising=False)
    with KeckService(email, password) as service:
        monkeypatch.setenv("KECK_OBSERVER_EMAIL", email)
        monkeypatch.setenv("KECK_OBSERVER_PASSWORD", password)
        monkeypatch.setenv("KECK_LOGIN_URL", service.base_url)
        yield service
    assert service.violations == []

"""The Keck observer login exchange, as the Keck login service speaks it.

The service at ``KECK`` (``KECK_LOGIN_URL``, else :data:`DEFAULT_KECK_LOGIN_URL`)::

    GET KECK/login/script?email=<email>&password=<password>&url=KECK
        -> 200 {"py_uid": ...}       (401 {"comment": ...} when refused)
    GET KECK/userinfo/odb-cookie     Cookie: KECK-AUTH-UID=<py_uid>
        -> 200 {"Id": <observer id>}

Every request to the calibrations API then carries the cookie
``observer=obsid=<base64 of the observer id>``. A 401 whose comment mentions
"verification" means the account needs a code sent by email, which a script
cannot give: use ``KOA_API_TOKEN`` instead.

The password travels in a query string, so the login service must be reached
over HTTPS (plain HTTP is accepted only on a loopback address, for tests), no
redirect is followed on the login, and neither that URL nor any secret
(password, email, ``py_uid``, cookie) is ever logged, shown in a repr or put
in an error message. The HTTP libraries' own log records of the exchanges
with the login service are dropped for the same reason.

:class:`koa_middleware.client.auth.KeckObserverLogin` keeps the session on disk and
reuses it.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import ipaddress
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..bounded_read import json_nesting_exceeds
from ..errors import AuthenticationError, ConfigurationError, RemoteUnavailableError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_KECK_LOGIN_URL",
    "KeckSession",
    "keck_base_url",
    "keck_login",
    "keck_session_is_valid",
]

#: The Keck login service, used when ``KECK_LOGIN_URL`` is not set.
DEFAULT_KECK_LOGIN_URL = "https://www3.keck.hawaii.edu"

_LOGIN_PATH = "/login/script"
_USERINFO_PATH = "/userinfo/odb-cookie"
#: The most bytes of one answer of the login service that are read (its answers
#: are a few hundred bytes).
MAX_LOGIN_ANSWER_BYTES = 64 << 10
#: Arrays and objects nest at most this deep in a login answer.
MAX_LOGIN_ANSWER_DEPTH = 32
#: How messages name the credential (never its value).
ACCOUNT_VARIABLES = "KECK_OBSERVER_EMAIL / KECK_OBSERVER_PASSWORD"


@dataclass(frozen=True)
class KeckSession:
    """A Keck observer session: the login service's ``py_uid`` and the observer id.

    Neither is shown in the repr: the ``py_uid`` opens the account and the
    observer cookie is the observer id in base64.

    Examples
    --------
    >>> session = KeckSession(py_uid="abc", observer_id="1234")
    >>> session.cookies
    {'observer': 'obsid=MTIzNA=='}
    >>> session
    KeckSession(py_uid=<hidden>, observer_id=<hidden>)
    """

    py_uid: str = field(repr=False)
    observer_id: str = field(repr=False)

    @property
    def observer_cookie(self) -> str:
        """The value of the ``observer`` cookie: ``obsid=<base64 of the observer id>``."""
        return "obsid=" + base64.b64encode(self.observer_id.encode()).decode("ascii")

    @property
    def cookies(self) -> dict[str, str]:
        """The cookies the calibrations API wants: ``{"observer": "obsid=..."}``."""
        return {"observer": self.observer_cookie}

    def __repr__(self) -> str:
        return "KeckSession(py_uid=<hidden>, observer_id=<hidden>)"


def keck_base_url(url: str | None = None) -> str:
    """Return the base URL of the Keck login service, checked for sending a password.

    Parameters
    ----------
    url : str | None
        ``KECK_LOGIN_URL``'s value; None or empty means :data:`DEFAULT_KECK_LOGIN_URL`.
        A value ending in ``/login/script`` (the step-1 route) is cut back to the base.

    Returns
    -------
    str
        The base URL, without a trailing ``/``.

    Raises
    ------
    ConfigurationError
        If the URL is not ``https://`` (plain ``http://`` is accepted only on
        127.0.0.0/8, ``::1`` and ``localhost``), names no host, or holds a user
        name, a query or a fragment.

    Examples
    --------
    >>> keck_base_url("https://www3.keck.hawaii.edu/login/script")
    'https://www3.keck.hawaii.edu'
    >>> keck_base_url("http://127.0.0.1:8080/")
    'http://127.0.0.1:8080'
    """
    value = (url or DEFAULT_KECK_LOGIN_URL).strip().rstrip("/")
    if value.endswith(_LOGIN_PATH):
        value = value[: -len(_LOGIN_PATH)].rstrip("/")
    try:
        parts = urlsplit(value)
        host, _ = parts.hostname or "", parts.port  # a bad port raises ValueError
    except ValueError:
        host, parts = "", urlsplit("")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        problem = "is not an https:// URL naming a host"
    elif "@" in parts.netloc or parts.query or parts.fragment:
        problem = "holds a user name, a query or a fragment"
    elif scheme == "http" and not _is_loopback(host):
        problem = (
            f"points at http://{host}, but the login sends the password in the request URL, "
            "so it must use https:// (plain http:// only on a loopback address)"
        )
    else:
        return value
    raise ConfigurationError(
        f"KECK_LOGIN_URL {problem}; set KECK_LOGIN_URL to the Keck login service over "
        f"https://, e.g. {DEFAULT_KECK_LOGIN_URL}, or unset it."
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- the exchange with the login service ---------------------------------------------

#: Set while this thread talks to the login service: the HTTP libraries' records are dropped.
_QUIET = contextvars.ContextVar("koa_keck_login_quiet", default=False)
_HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class _DropDuringKeckLogin(logging.Filter):
    """Drops httpx's and httpcore's records of the login exchanges.

    httpx logs every request's full URL at INFO (the login's holds the
    password) and httpcore logs response headers at DEBUG (they may set
    session cookies). The filter only acts in the thread and context that is
    talking to the login service.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not _QUIET.get()


_DROP_FILTER = _DropDuringKeckLogin()


@contextlib.contextmanager
def _login_service_client(timeout: float) -> Iterator[httpx.Client]:
    for name in _HTTP_LOGGERS:
        logging.getLogger(name).addFilter(_DROP_FILTER)  # adding it twice is a no-op
    token = _QUIET.set(True)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            yield client
    finally:
        _QUIET.reset(token)


@dataclass(frozen=True)
class _Answer:
    """A login service's answer, read within :data:`MAX_LOGIN_ANSWER_BYTES`."""

    status_code: int
    content: bytes


def _get(client: httpx.Client, base: str, path: str, **kwargs: Any) -> _Answer:
    """GET from the login service, reading at most :data:`MAX_LOGIN_ANSWER_BYTES` of the answer.

    Its errors are re-raised without the URL they carry.

    Raises
    ------
    AuthenticationError
        If the answer is longer than the bound.
    RemoteUnavailableError
        If the service cannot be reached.
    """
    try:
        with client.stream("GET", base + path, **kwargs) as response:
            content = _bounded_content(response)
            status = response.status_code
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        reason = type(exc).__name__
    else:
        if content is not None:
            return _Answer(status, content)
        raise AuthenticationError(
            f"The Keck login service at {base} sent an answer of more than "
            f"{MAX_LOGIN_ANSWER_BYTES:,} bytes to {path} (status {status}); a login answer "
            "is a few hundred bytes, so it was not read. Check that KECK_LOGIN_URL names the "
            f"login service (e.g. {DEFAULT_KECK_LOGIN_URL}), or set KOA_API_TOKEN.",
            url=base,
            status=status,
        )
    # Raised outside the handler, so the httpx error (and its URL) is not chained.
    raise RemoteUnavailableError(
        f"The Keck login service at {base} cannot be reached ({reason}); check "
        "KECK_LOGIN_URL and your network, or set KOA_API_TOKEN.",
        url=base,
    )


def _bounded_content(response: httpx.Response) -> bytes | None:
    """The answer's body, or None when it is longer than :data:`MAX_LOGIN_ANSWER_BYTES`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_LOGIN_ANSWER_BYTES:
        return None
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_LOGIN_ANSWER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _userinfo(client: httpx.Client, base: str, py_uid: str) -> _Answer:
    return _get(client, base, _USERINFO_PATH, headers={"Cookie": f"KECK-AUTH-UID={py_uid}"})


def _json_object(answer: _Answer, base: str, path: str) -> Mapping[str, Any]:
    """The answer's JSON object; {} for anything else, refused when nested too deep."""
    if json_nesting_exceeds(answer.content, MAX_LOGIN_ANSWER_DEPTH):
        raise AuthenticationError(
            f"The Keck login service at {base} answered {path} with JSON nested more than "
            f"{MAX_LOGIN_ANSWER_DEPTH} levels deep (status {answer.status_code}), which no "
            "login answer is; it was not read. Check KECK_LOGIN_URL, or set KOA_API_TOKEN.",
            url=base,
            status=answer.status_code,
        )
    try:
        data = json.loads(answer.content)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, Mapping) else {}


def _observer_id(answer: _Answer, base: str) -> str | None:
    if answer.status_code != 200:
        return None
    value = _json_object(answer, base, _USERINFO_PATH).get("Id")
    return None if value is None or value == "" else str(value)


def keck_login(
    email: str,
    password: str,
    login_url: str | None = DEFAULT_KECK_LOGIN_URL,
    *,
    timeout: float = 30.0,
) -> KeckSession:
    """Log in to the Keck login service and return the observer session.

    ``GET KECK/login/script`` with ``email``, ``password`` and ``url=KECK`` as
    query parameters (no redirect followed) gives the ``py_uid``; ``GET
    KECK/userinfo/odb-cookie`` with cookie ``KECK-AUTH-UID=<py_uid>`` gives the
    observer ``Id``.

    Parameters
    ----------
    email, password : str
        The Keck observer account.
    login_url : str | None
        The login service's base URL ``KECK`` (see :func:`keck_base_url`).
    timeout : float
        Seconds to wait for the service.

    Returns
    -------
    KeckSession
        The ``py_uid`` and the observer id.

    Raises
    ------
    ConfigurationError
        If ``login_url`` is not acceptable for sending a password (see :func:`keck_base_url`).
    AuthenticationError
        If the service refuses the email or password, asks for an emailed
        verification code, answers with a redirect, answers without a
        ``py_uid`` or observer id, or sends what no login answer holds: more
        than :data:`MAX_LOGIN_ANSWER_BYTES`, JSON nested deeper than
        :data:`MAX_LOGIN_ANSWER_DEPTH`, a ``py_uid`` that is not printable ASCII.
    RemoteUnavailableError
        If the service cannot be reached or answers 5xx.
    """
    base = keck_base_url(login_url)
    logger.info("Logging in to the Keck login service at %s.", base)
    with _login_service_client(timeout) as client:
        params = {"email": email, "password": password, "url": base}
        response = _get(client, base, _LOGIN_PATH, params=params)
        py_uid = _check_login_answer(response, base)
        client.cookies.clear()
        answer = _userinfo(client, base, py_uid)
    observer_id = _observer_id(answer, base)
    if observer_id is None:
        raise AuthenticationError(
            f"The Keck login service at {base} accepted the login of {ACCOUNT_VARIABLES} "
            f"but gave no observer id for it ({answer.status_code} from {_USERINFO_PATH}); "
            "try again later, or set KOA_API_TOKEN.",
            url=base,
            status=answer.status_code,
        )
    logger.info("Keck observer login succeeded.")
    return KeckSession(py_uid=py_uid, observer_id=observer_id)


def _check_login_answer(response: _Answer, base: str) -> str:
    """Return the ``py_uid`` of a step-1 answer, or raise the error that fits it."""
    status = response.status_code
    where = f"The Keck login service at {base}"
    if 300 <= status < 400:
        raise AuthenticationError(
            f"{where} answered the login with a redirect ({status}), which is not followed "
            "because the login request carries the password; check that KECK_LOGIN_URL "
            f"names the login service itself (e.g. {DEFAULT_KECK_LOGIN_URL}).",
            url=base,
            status=status,
        )
    comment = _json_object(response, base, _LOGIN_PATH).get("comment", "") if status == 401 else ""
    if "verification" in str(comment).lower():
        raise AuthenticationError(
            f"{where} wants an emailed verification code for the account in "
            f"{ACCOUNT_VARIABLES}, which a script cannot give; ask the archive operators "
            "for an API token and set KOA_API_TOKEN instead.",
            url=base,
            status=status,
        )
    if status in (401, 403):
        raise AuthenticationError(
            f"{where} refused the email or password of the Keck observer login ({status}); "
            f"check {ACCOUNT_VARIABLES}.",
            url=base,
            status=status,
        )
    if status >= 500:
        raise RemoteUnavailableError(
            f"{where} answered {status} to the login of {ACCOUNT_VARIABLES}; try again "
            "later, or set KOA_API_TOKEN.",
            url=base,
            status=status,
        )
    py_uid = _json_object(response, base, _LOGIN_PATH).get("py_uid") if status == 200 else None
    if py_uid is not None and not _is_cookie_value(str(py_uid).strip()):
        # The value opens the account: say what is wrong with it, never what it is.
        raise AuthenticationError(
            f"{where} answered the login of {ACCOUNT_VARIABLES} with a session id (py_uid) "
            f"of {len(str(py_uid))} characters that is not printable ASCII without ';', "
            "so it cannot be sent back as a cookie; check that KECK_LOGIN_URL names the "
            f"login service (e.g. {DEFAULT_KECK_LOGIN_URL}), or set KOA_API_TOKEN.",
            url=base,
            status=status,
        )
    if py_uid is None or str(py_uid).strip() == "":
        raise AuthenticationError(
            f"{where} answered {status} to the login of {ACCOUNT_VARIABLES} without a "
            f"session id (py_uid); check that KECK_LOGIN_URL names the login service "
            f"(e.g. {DEFAULT_KECK_LOGIN_URL}).",
            url=base,
            status=status,
        )
    return str(py_uid).strip()


def _is_cookie_value(text: str) -> bool:
    """Whether ``text`` can go in a ``Cookie`` header as it is (printable ASCII, no ``;``)."""
    return text.isascii() and text.isprintable() and ";" not in text and "," not in text


def keck_session_is_valid(
    session: KeckSession, login_url: str | None = DEFAULT_KECK_LOGIN_URL, *, timeout: float = 30.0
) -> bool:
    """Return whether the login service still knows ``session`` (step 2 answers its ``Id``).

    Raises :class:`~koa_middleware.errors.RemoteUnavailableError` if the
    service cannot be reached.
    """
    base = keck_base_url(login_url)
    if not _is_cookie_value(session.py_uid):
        logger.info("The kept Keck session cannot be sent as a cookie; logging in again.")
        return False
    with _login_service_client(timeout) as client:
        answer = _userinfo(client, base, session.py_uid)
    valid = _observer_id(answer, base) == session.observer_id
    if not valid:
        logger.info("The kept Keck session is no longer valid (%d).", answer.status_code)
    return valid


# -- the credential that keeps its session on disk -------------------------------------

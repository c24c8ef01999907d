"""Credentials for the calibration archive: bearer tokens and the Keck observer login.

Which credential a client uses is settled by :func:`resolve_credentials`:

1. a bearer token given as an argument, else
2. a bearer token in ``KOA_API_TOKEN``, else
3. the Keck observer login from ``KECK_OBSERVER_EMAIL`` and
   ``KECK_OBSERVER_PASSWORD``, else
4. no credentials (anonymous requests).

A token takes precedence over the Keck login when both are configured.

The Keck observer login exchange (:func:`keck_login`) is::

    POST <login_url>
    Content-Type: application/x-www-form-urlencoded

    email=<email>&password=<password>

A 2xx answer sets the session cookies (``Set-Cookie``); 401 or 403 means the
email or password was refused. The login URL is ``KECK_LOGIN_URL``, else
:data:`DEFAULT_KECK_LOGIN_URL`. The session cookies are kept in the user's
state directory (``platformdirs.user_state_dir('koa_middleware')``, file
``keck_session.json``, mode 0600) and reused, across processes and sessions,
until the archive refuses them; then the client logs in again once.

No secret (token, password, cookie) is ever logged or shown in a repr.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import httpx
import platformdirs

from .errors import AuthenticationError, ConfigurationError, RemoteUnavailableError
from .records import utc_now

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_KECK_LOGIN_URL",
    "Credentials",
    "BearerToken",
    "KeckObserverLogin",
    "Anonymous",
    "resolve_credentials",
    "keck_login",
    "session_file_path",
]

#: The Keck observer login service, used when ``KECK_LOGIN_URL`` is not set.
DEFAULT_KECK_LOGIN_URL = "https://www3.keck.hawaii.edu/login/script"

_APP_NAME = "koa_middleware"
_SESSION_FILE_NAME = "keck_session.json"


class Credentials(Protocol):
    """What the archive client needs from a credential."""

    #: Says which credential this is (e.g. "bearer token from KOA_API_TOKEN"), never its value.
    description: str

    def auth_headers(self) -> dict[str, str]:
        """Return the headers that authenticate a request."""
        ...

    def renew(self) -> bool:
        """Try to obtain fresh credentials after a 401; return True when a retry makes sense."""
        ...


class Anonymous:
    """No credentials: requests go out unauthenticated."""

    description = "no credentials (anonymous access)"

    def auth_headers(self) -> dict[str, str]:
        return {}

    def renew(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "Anonymous()"


class BearerToken:
    """An archive API token sent as ``Authorization: Bearer <token>``.

    Parameters
    ----------
    token : str
        The token.
    source : str
        Where it came from, for messages (e.g. ``"KOA_API_TOKEN"``).

    Examples
    --------
    >>> BearerToken("s3cret", source="KOA_API_TOKEN")
    BearerToken(source='KOA_API_TOKEN', token=<hidden>)
    """

    def __init__(self, token: str, source: str = "the token argument"):
        token = token.strip()
        if not token or any(ch in token for ch in "\r\n"):
            raise ConfigurationError(
                f"The API token from {source} is empty or holds a line break; "
                "set KOA_API_TOKEN (or pass token=) to the token the archive operators gave you."
            )
        self._token = token
        self.source = source
        self.description = f"bearer token from {source}"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def renew(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"BearerToken(source={self.source!r}, token=<hidden>)"


def session_file_path() -> Path:
    """Return where the Keck observer session cookies are kept.

    ``platformdirs.user_state_dir('koa_middleware') / 'keck_session.json'``; on
    Linux this follows ``XDG_STATE_HOME``.
    """
    return Path(platformdirs.user_state_dir(_APP_NAME)) / _SESSION_FILE_NAME


def keck_login(
    email: str,
    password: str,
    login_url: str = DEFAULT_KECK_LOGIN_URL,
    *,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Log in to the Keck observer login service and return the session cookies.

    The exchange is one ``POST`` of the form fields ``email`` and ``password``
    to ``login_url``; a 2xx answer carries the session cookies in
    ``Set-Cookie`` headers.

    Parameters
    ----------
    email, password : str
        The Keck observer account.
    login_url : str
        The login endpoint.
    timeout : float
        Seconds to wait for the service.

    Returns
    -------
    dict[str, str]
        Cookie names and values.

    Raises
    ------
    AuthenticationError
        If the service refuses the email or password, or sets no cookie.
    RemoteUnavailableError
        If the login service cannot be reached.
    """
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(login_url, data={"email": email, "password": password})
    except httpx.TransportError as exc:
        raise RemoteUnavailableError(
            f"The Keck login service at {login_url} cannot be reached "
            f"({type(exc).__name__}); check KECK_LOGIN_URL and your network.",
            url=login_url,
        ) from exc
    if response.status_code in (401, 403):
        raise AuthenticationError(
            f"The Keck login service at {login_url} refused the Keck observer login of "
            f"KECK_OBSERVER_EMAIL ({response.status_code}); check KECK_OBSERVER_EMAIL and "
            "KECK_OBSERVER_PASSWORD.",
            url=login_url,
            status=response.status_code,
        )
    if not response.is_success:
        raise AuthenticationError(
            f"The Keck login service at {login_url} answered {response.status_code} to the "
            "login; try again later or check KECK_LOGIN_URL.",
            url=login_url,
            status=response.status_code,
        )
    cookies = {name: value for name, value in response.cookies.items()}
    if not cookies:
        raise AuthenticationError(
            f"The Keck login service at {login_url} accepted the login but set no session "
            "cookie; check KECK_LOGIN_URL points at the login endpoint.",
            url=login_url,
            status=response.status_code,
        )
    return cookies


class KeckObserverLogin:
    """The Keck observer login, with its session cookies kept on disk and reused.

    The cookies are read from ``session_file`` when it holds a session of the
    same account and login URL; otherwise (or after the archive refused them,
    see :meth:`renew`) the client logs in with :func:`keck_login` and stores the
    new cookies with file mode 0600.

    Parameters
    ----------
    email, password : str
        The Keck observer account (``KECK_OBSERVER_EMAIL``, ``KECK_OBSERVER_PASSWORD``).
    login_url : str | None
        The login endpoint; None reads ``KECK_LOGIN_URL``, else
        :data:`DEFAULT_KECK_LOGIN_URL`.
    session_file : str | Path | None
        Where to keep the cookies; None uses :func:`session_file_path`.
    timeout : float
        Seconds to wait for the login service.

    Examples
    --------
    >>> login = KeckObserverLogin("me@example.org", "pw", login_url="http://127.0.0.1:9/login")
    >>> login
    KeckObserverLogin(login_url='http://127.0.0.1:9/login', password=<hidden>)
    """

    description = "Keck observer login from KECK_OBSERVER_EMAIL / KECK_OBSERVER_PASSWORD"

    def __init__(
        self,
        email: str,
        password: str,
        *,
        login_url: str | None = None,
        session_file: str | os.PathLike | None = None,
        timeout: float = 30.0,
    ):
        if not email or not password:
            raise ConfigurationError(
                "The Keck observer login needs both KECK_OBSERVER_EMAIL and "
                "KECK_OBSERVER_PASSWORD; set both, or set KOA_API_TOKEN instead."
            )
        self._email = email
        self._password = password
        self.login_url = login_url or os.environ.get("KECK_LOGIN_URL") or DEFAULT_KECK_LOGIN_URL
        self.session_file = Path(session_file) if session_file else session_file_path()
        self.timeout = timeout
        self._cookies: dict[str, str] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeckObserverLogin(login_url={self.login_url!r}, password=<hidden>)"

    @property
    def _account_key(self) -> str:
        # The file names the account by a hash, so it holds no address in clear.
        return hashlib.sha256(f"{self._email}\n{self.login_url}".encode()).hexdigest()

    def auth_headers(self) -> dict[str, str]:
        """Return the ``Cookie`` header of the session, logging in first when there is none."""
        with self._lock:
            if self._cookies is None:
                self._cookies = self._load_session()
            if self._cookies is None:
                self._cookies = self._login()
            cookies = self._cookies
        return {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())}

    def renew(self) -> bool:
        """Forget the stored session and log in again; True when a fresh login succeeded."""
        with self._lock:
            logger.info("The archive refused the stored Keck session; logging in again.")
            self._forget_session()
            self._cookies = self._login()
        return True

    def _login(self) -> dict[str, str]:
        cookies = keck_login(self._email, self._password, self.login_url, timeout=self.timeout)
        logger.info("Keck observer login succeeded; session kept in %s", self.session_file)
        self._save_session(cookies)
        return cookies

    def _load_session(self) -> dict[str, str] | None:
        path = self.session_file
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        if info.st_uid != os.getuid():
            logger.warning("Ignoring %s: it belongs to another user.", path)
            return None
        if stat.S_IMODE(info.st_mode) & 0o077:
            # Readable by others: the cookies may have leaked, so do not use them.
            logger.warning("Ignoring %s: its mode is not 0600; logging in again.", path)
            self._forget_session()
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("Ignoring unreadable Keck session file %s.", path)
            return None
        if not isinstance(data, Mapping) or data.get("account") != self._account_key:
            return None
        cookies = data.get("cookies")
        if not isinstance(cookies, Mapping) or not cookies:
            return None
        return {str(name): str(value) for name, value in cookies.items()}

    def _save_session(self, cookies: Mapping[str, str]) -> None:
        path = self.session_file
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = json.dumps(
            {"account": self._account_key, "saved": utc_now(), "cookies": dict(cookies)}
        )
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        # Created with 0600 from the start, so the cookies are never readable by others.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise

    def _forget_session(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.session_file.unlink()
        self._cookies = None


def resolve_credentials(
    token: str | None = None,
    *,
    login_url: str | None = None,
    session_file: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """Choose the credentials to send to the archive.

    A ``token`` argument wins, then ``KOA_API_TOKEN``, then the Keck observer
    login (``KECK_OBSERVER_EMAIL`` and ``KECK_OBSERVER_PASSWORD``), else anonymous.

    Parameters
    ----------
    token : str | None
        An archive API token.
    login_url, session_file
        Passed on to :class:`KeckObserverLogin`.
    environ : Mapping | None
        The environment to read; None reads ``os.environ``.

    Returns
    -------
    Credentials
        A :class:`BearerToken`, :class:`KeckObserverLogin` or :class:`Anonymous`.

    Raises
    ------
    ConfigurationError
        If only one of ``KECK_OBSERVER_EMAIL`` / ``KECK_OBSERVER_PASSWORD`` is set,
        or a token is empty.

    Examples
    --------
    >>> resolve_credentials(environ={"KOA_API_TOKEN": "abc"}).description
    'bearer token from KOA_API_TOKEN'
    >>> resolve_credentials(environ={}).description
    'no credentials (anonymous access)'
    """
    env = os.environ if environ is None else environ
    if token:
        return BearerToken(token, source="the token argument")
    if env.get("KOA_API_TOKEN"):
        return BearerToken(env["KOA_API_TOKEN"], source="KOA_API_TOKEN")
    email = env.get("KECK_OBSERVER_EMAIL")
    password = env.get("KECK_OBSERVER_PASSWORD")
    if email or password:
        return KeckObserverLogin(
            email or "",
            password or "",
            login_url=login_url or env.get("KECK_LOGIN_URL"),
            session_file=session_file,
        )
    return Anonymous()

"""Credentials for the calibration archive: bearer tokens and the Keck observer login.

Which credential a client uses is settled once, by
:func:`koa_middleware.config.resolve_credential` (or a store's
:attr:`~koa_middleware.config.StoreConfig.credential`):

1. a bearer token given as an argument, else
2. a bearer token in ``KOA_API_TOKEN``, else
3. the Keck observer login from ``KECK_OBSERVER_EMAIL`` and
   ``KECK_OBSERVER_PASSWORD``, else
4. no credentials (anonymous requests).

A token takes precedence over the Keck login when both are configured.
:func:`credentials_for` turns that choice into the object the client sends;
:func:`resolve_credentials` does both steps.

The Keck observer login exchange itself is in :mod:`koa_middleware.client.keck_login`.
:class:`KeckObserverLogin` keeps its session (the ``py_uid`` and the observer
cookie, never the email or the password) in the user's state directory
(``platformdirs.user_state_dir('koa_middleware')``, file ``keck_session.json``,
mode 0600, keyed by a hash of the account) and reuses it across processes once
the login service confirms it is still alive. When the archive refuses it, the
client logs in again once.

No secret (password, email, ``py_uid``, cookie, token) is ever logged, shown
in a repr or put in an error message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import platformdirs

from ..config import (
    DEFAULT,
    KECK_LOGIN_SOURCE,
    TOKEN_ARGUMENT,
    ArchiveCredential,
    Default,
    given,
    resolve_credential,
)
from ..errors import ConfigurationError
from ..records import utc_now
from .keck_login import (
    DEFAULT_KECK_LOGIN_URL,
    KeckSession,
    keck_base_url,
    keck_login,
    keck_session_is_valid,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_KECK_LOGIN_URL",
    "Credentials",
    "BearerToken",
    "KeckObserverLogin",
    "KeckSession",
    "Anonymous",
    "credentials_for",
    "resolve_credentials",
    "keck_base_url",
    "keck_login",
    "keck_session_is_valid",
    "session_file_path",
]

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

    def __init__(self, token: str, source: str = TOKEN_ARGUMENT):
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
    """Return where the Keck observer session is kept.

    ``platformdirs.user_state_dir('koa_middleware') / 'keck_session.json'``; on
    Linux this follows ``XDG_STATE_HOME``.
    """
    return Path(platformdirs.user_state_dir(_APP_NAME)) / _SESSION_FILE_NAME


class KeckObserverLogin:
    """The Keck observer login, with its session kept on disk and reused.

    The session is read from ``session_file`` when it holds one of the same
    account and login service, and reused once :func:`keck_session_is_valid`
    confirms it; otherwise (or after the archive refused it, see
    :meth:`renew`) the client logs in with :func:`keck_login` and stores the
    new session with file mode 0600.

    Parameters
    ----------
    email, password : str
        The Keck observer account (``KECK_OBSERVER_EMAIL``, ``KECK_OBSERVER_PASSWORD``).
    login_url : str | None | Default
        The login service's base URL. :data:`~koa_middleware.config.DEFAULT`
        (or None, or ``''``) reads ``KECK_LOGIN_URL``, else
        :data:`DEFAULT_KECK_LOGIN_URL` (see :func:`keck_base_url`).
    session_file : str | Path | None
        Where to keep the session; None uses :func:`session_file_path`.
    timeout : float
        Seconds to wait for the login service.

    Raises
    ------
    ConfigurationError
        If the email or password is missing, or the login URL is not
        acceptable for sending a password (see :func:`keck_base_url`).

    Examples
    --------
    >>> login = KeckObserverLogin("me@example.org", "pw", login_url="http://127.0.0.1:9")
    >>> login
    KeckObserverLogin(login_url='http://127.0.0.1:9', password=<hidden>)
    """

    description = f"Keck observer login from {KECK_LOGIN_SOURCE}"

    def __init__(
        self,
        email: str,
        password: str,
        *,
        login_url: str | None | Default = DEFAULT,
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
        if not given(login_url) or not login_url:
            login_url = os.environ.get("KECK_LOGIN_URL")
        self.login_url = keck_base_url(login_url)
        self.session_file = Path(session_file) if session_file else session_file_path()
        self.timeout = timeout
        self._session: KeckSession | None = None
        self._lock = threading.RLock()
        self._sent = threading.local()  # the session each thread last sent

    def __repr__(self) -> str:
        return f"KeckObserverLogin(login_url={self.login_url!r}, password=<hidden>)"

    @property
    def _account_key(self) -> str:
        # The file names the account by a hash, so it holds no address in clear.
        return hashlib.sha256(f"{self._email}\n{self.login_url}".encode()).hexdigest()

    def auth_headers(self) -> dict[str, str]:
        """Return the ``Cookie`` header of the session, reusing or logging in first."""
        session = self._sent.session = self.session()
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in session.cookies.items())}

    def session(self) -> KeckSession:
        """Return the live session: the one in use, else a valid kept one, else a new login."""
        with self._lock:
            if self._session is None:
                stored = self.stored_session()
                if stored is not None and self.is_valid(stored):
                    logger.info("Reusing the Keck session kept in %s.", self.session_file)
                    self._session = stored
                else:
                    self._session = self.login()
            return self._session

    def renew(self) -> bool:
        """Replace the session the archive refused; True when a fresh one was obtained.

        When another thread has replaced it already, that session is used; a
        session another process stored meanwhile is used when it is valid;
        otherwise this logs in again.
        """
        with self._lock:
            refused = getattr(self._sent, "session", None) or self._session
            if self._session is not None and self._session != refused:
                return True  # another thread renewed it meanwhile
            self._session = None
            logger.info("The archive refused the Keck session; renewing it.")
            stored = self.stored_session()
            if stored is not None and stored != refused and self.is_valid(stored):
                self._session = stored
            else:
                self._session = self.login()
        return True

    def login(self) -> KeckSession:
        """Log in with :func:`keck_login`, keep the session on disk and return it."""
        with self._lock:
            session = keck_login(self._email, self._password, self.login_url, timeout=self.timeout)
            self._save_session(session)
            self._session = session
            logger.info("Keck session kept in %s.", self.session_file)
            return session

    def is_valid(self, session: KeckSession) -> bool:
        """Return whether the login service still knows ``session``."""
        return keck_session_is_valid(session, self.login_url, timeout=self.timeout)

    def stored_session(self) -> KeckSession | None:
        """Return the session kept on disk for this account, unchecked, or None.

        A file readable or writable by others is deleted and not trusted; one
        owned by another user, or a symbolic link, is ignored.
        """
        data = self._read_session_file()
        if not isinstance(data, Mapping) or data.get("account") != self._account_key:
            return None
        py_uid, cookie = data.get("py_uid"), data.get("observer")
        if not isinstance(py_uid, str) or not isinstance(cookie, str) or not py_uid:
            return None
        if not cookie.startswith("obsid="):
            return None
        try:
            observer_id = base64.b64decode(cookie[len("obsid=") :], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        session = KeckSession(py_uid=py_uid, observer_id=observer_id)
        return session if session.observer_cookie == cookie else None

    def _read_session_file(self) -> Any:
        path = self.session_file
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("Ignoring the Keck session file %s (%s).", path, exc.strerror)
            return None
        with os.fdopen(fd, "r", encoding="utf-8") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                logger.warning("Ignoring %s: it is not a file of this user.", path)
                return None
            if stat.S_IMODE(info.st_mode) & 0o077:
                # Readable by others: the session may have leaked, so do not use it.
                logger.warning("Ignoring %s: its mode is not 0600; logging in again.", path)
                self._forget_session_file()
                return None
            try:
                return json.loads(handle.read())
            except (OSError, ValueError):
                logger.warning("Ignoring the unreadable Keck session file %s.", path)
                return None

    def _save_session(self, session: KeckSession) -> None:
        path = self.session_file
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = json.dumps(
            {
                "account": self._account_key,
                "saved": utc_now(),
                "py_uid": session.py_uid,
                "observer": session.observer_cookie,
            }
        )
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()  # left by a crashed writer of the same process id
        # Created with 0600 from the start, so the session is never readable by others.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise

    def _forget_session_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.session_file.unlink()


def credentials_for(
    credential: ArchiveCredential, *, session_file: str | os.PathLike | None = None
) -> Credentials:
    """Turn a resolved credential into what the client sends; no environment is read.

    Parameters
    ----------
    credential : ArchiveCredential
        The choice made by :func:`koa_middleware.config.resolve_credential`
        or :attr:`koa_middleware.config.StoreConfig.credential`.
    session_file : str | Path | None
        Where a Keck login keeps its session; None uses :func:`session_file_path`.

    Returns
    -------
    Credentials
        A :class:`BearerToken` or :class:`KeckObserverLogin` that names
        ``credential.source`` in its description, or :class:`Anonymous`.

    Raises
    ------
    ConfigurationError
        If the token is empty or holds a line break, only one half of the Keck
        login is set, or the login URL is not an https:// URL.

    Examples
    --------
    >>> from koa_middleware.config import resolve_credential
    >>> credentials_for(resolve_credential(environ={"KOA_API_TOKEN": "abc"}))
    BearerToken(source='KOA_API_TOKEN', token=<hidden>)
    """
    if credential.kind == "token":
        return BearerToken(credential.token or "", source=credential.source)
    if credential.kind == "keck_login":
        return KeckObserverLogin(
            credential.email or "",
            credential.password or "",
            login_url=credential.login_url or DEFAULT_KECK_LOGIN_URL,
            session_file=session_file,
        )
    return Anonymous()


def resolve_credentials(
    token: str | None | Default = DEFAULT,
    *,
    login_url: str | None | Default = DEFAULT,
    session_file: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """Choose the credentials to send to the archive, from ``token`` and the environment.

    A ``token`` argument wins, then ``KOA_API_TOKEN``, then the Keck observer
    login (``KECK_OBSERVER_EMAIL`` and ``KECK_OBSERVER_PASSWORD``), else anonymous:
    :func:`koa_middleware.config.resolve_credential`, then :func:`credentials_for`.

    Parameters
    ----------
    token : str | None | Default
        An archive API token; :data:`~koa_middleware.config.DEFAULT` (or None,
        as in the reference implementation) reads the environment.
    login_url : str | None | Default
        The Keck login service; :data:`~koa_middleware.config.DEFAULT` (or
        None) reads ``KECK_LOGIN_URL``.
    session_file
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
        a token is empty, or ``KECK_LOGIN_URL`` is not an https:// URL.

    Examples
    --------
    >>> resolve_credentials(environ={"KOA_API_TOKEN": "abc"}).description
    'bearer token from KOA_API_TOKEN'
    >>> resolve_credentials(environ={}).description
    'no credentials (anonymous access)'
    """
    credential = resolve_credential(token, login_url=login_url, environ=environ)
    return credentials_for(credential, session_file=session_file)

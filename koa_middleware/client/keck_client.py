"""The Keck observer login as a client object, for pipelines written against the reference API.

:class:`KeckObserverAuthClient` logs in with ``KECK_OBSERVER_EMAIL`` and
``KECK_OBSERVER_PASSWORD`` (or reuses the session kept on disk, once the
login service confirms it) and holds an :class:`httpx.Client` that carries the
``observer`` cookie the calibrations API wants. The exchange with the login
service and the session file are those of :mod:`koa_middleware.client.auth`; see
there for the rules (HTTPS only, nothing secret logged).

Examples
--------
>>> client = KeckObserverAuthClient()  # doctest: +SKIP
>>> client.session.get(f"{client.login_url}/api/calibrations/hispec/lastUpdated")  # doctest: +SKIP
<Response [200 OK]>
"""

from __future__ import annotations

import logging
import os
import threading
from typing import ClassVar

import httpx
from platformdirs import user_state_dir  # noqa: F401  (a name the reference's module carries)

from ..errors import ConfigurationError
from .auth import KeckObserverLogin, KeckSession, keck_base_url

logger = logging.getLogger(__name__)

__all__ = ["KeckObserverAuthClient"]

#: Seconds an :attr:`KeckObserverAuthClient.session` request waits, as the login does.
_TIMEOUT = 30.0


class KeckObserverAuthClient:
    """A logged-in Keck observer session, shared by every instance in a process.

    The first construction in a process reads the session kept on disk
    (:meth:`_load_cookies`) and checks it with the login service
    (:meth:`_validate_login`); when there is none or it is no longer valid, it
    logs in (:meth:`_perform_login`). Later constructions reuse that session
    without asking the login service again.

    Attributes
    ----------
    login_url : str
        The Keck login service (``KECK_LOGIN_URL``, default
        ``https://www3.keck.hawaii.edu``; a trailing ``/login/script`` is dropped).
    session : httpx.Client
        A client whose cookie jar holds the ``observer`` cookie; send the
        calibrations API requests with it.

    Raises
    ------
    ConfigurationError
        (a ``ValueError``) If ``KECK_OBSERVER_EMAIL`` or ``KECK_OBSERVER_PASSWORD``
        is not set, or ``KECK_LOGIN_URL`` is not an https:// URL (plain
        http:// only on a loopback address).
    AuthenticationError
        (a ``PermissionError``) If the login service refuses the email or
        password, or wants an emailed verification code (use ``KOA_API_TOKEN``
        instead).
    RemoteUnavailableError
        (a ``ConnectionError``) If the login service cannot be reached.

    Examples
    --------
    >>> client = KeckObserverAuthClient()  # doctest: +SKIP
    >>> sorted(client.cookies_dict)  # doctest: +SKIP
    ['observer']
    """

    _cached_session: ClassVar[httpx.Client | None] = None
    _cached_observer_id: ClassVar[str | None] = None
    #: The session behind ``_cached_session``, so a later instance can still validate it.
    _cached_kept: ClassVar[KeckSession | None] = None
    _class_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.login_url = keck_base_url(os.environ.get("KECK_LOGIN_URL"))
        self._kept: KeckSession | None = None
        self._login: KeckObserverLogin | None = None
        self._observer_id: str | None = None
        with KeckObserverAuthClient._class_lock:
            cached = KeckObserverAuthClient._cached_session
            if cached is not None:
                self.session = cached
                self._observer_id = KeckObserverAuthClient._cached_observer_id
                self._kept = KeckObserverAuthClient._cached_kept
                return
            self.session = httpx.Client(timeout=_TIMEOUT)
            try:
                if not self._load_cookies() or not self._validate_login():
                    logger.info("No valid Keck session kept; logging in.")
                    observer_id, cookies = self._perform_login()
                    self._set_cookies(cookies)
                    self._observer_id = observer_id
            except BaseException:
                self.session.close()
                raise
            KeckObserverAuthClient._cached_session = self.session
            KeckObserverAuthClient._cached_observer_id = self._observer_id
            KeckObserverAuthClient._cached_kept = self._kept

    def __repr__(self) -> str:
        return f"KeckObserverAuthClient(login_url={self.login_url!r}, observer=<hidden>)"

    def _credentials(self) -> KeckObserverLogin:
        """The login of ``KECK_OBSERVER_EMAIL`` / ``KECK_OBSERVER_PASSWORD``, made once."""
        if self._login is None:
            email = os.environ.get("KECK_OBSERVER_EMAIL", "")
            password = os.environ.get("KECK_OBSERVER_PASSWORD", "")
            if not email or not password:
                raise ConfigurationError(
                    "KECK_OBSERVER_EMAIL and KECK_OBSERVER_PASSWORD must both be set for the "
                    "Keck observer login; set them, or use KOA_API_TOKEN with the archive client."
                )
            self._login = KeckObserverLogin(email, password, login_url=self.login_url)
        return self._login

    def _set_cookies(self, cookies: dict[str, str]) -> None:
        for name, value in cookies.items():
            self.session.cookies.set(name, value)

    # -- the reference's steps -----------------------------------------------------------

    def _validate_login(self) -> bool:
        """Check the session in hand with the login service.

        Returns
        -------
        bool
            True when the login service still knows the session (its
            ``/userinfo/odb-cookie`` answers the session's observer id); False
            when there is no session in hand or it is no longer valid.

        Raises
        ------
        RemoteUnavailableError
            If the login service cannot be reached.
        """
        if self._kept is None:
            return False
        return self._credentials().is_valid(self._kept)

    def _perform_login(self) -> tuple[str, dict]:
        """Log in with ``KECK_OBSERVER_EMAIL`` / ``KECK_OBSERVER_PASSWORD``.

        The new session is kept on disk (mode 0600) for later processes.

        Returns
        -------
        tuple[str, dict]
            The observer id, and the observer cookie as ``{"observer": "obsid=<base64 id>"}``.

        Raises
        ------
        ConfigurationError
            (a ``ValueError``) If either variable is not set.
        AuthenticationError
            (a ``PermissionError``) If the login service refuses the email or
            password, or wants an emailed verification code.
        RemoteUnavailableError
            If the login service cannot be reached.
        """
        session = self._credentials().login()
        self._kept = session
        return session.observer_id, session.cookies

    def _load_cookies(self) -> bool:
        """Put the session kept on disk for this account into :attr:`session`, unchecked.

        Returns
        -------
        bool
            True when a kept session was found and loaded; False when there is
            none (or the file is not trusted: not 0600, or not this user's).

        Raises
        ------
        ConfigurationError
            (a ``ValueError``) If ``KECK_OBSERVER_EMAIL`` or
            ``KECK_OBSERVER_PASSWORD`` is not set: the file is kept per account.
        """
        kept = self._credentials().stored_session()
        if kept is None:
            return False
        self._kept = kept
        self._set_cookies(kept.cookies)
        self._observer_id = kept.observer_id
        return True

    # -- the session's cookies -----------------------------------------------------------

    @property
    def cookies(self) -> httpx.Cookies:
        """The cookie jar of :attr:`session` (it holds the ``observer`` cookie)."""
        return self.session.cookies

    @property
    def cookies_dict(self) -> dict[str, str]:
        """The session's cookies as a plain dict, e.g. ``{"observer": "obsid=..."}``."""
        return {cookie.name: cookie.value or "" for cookie in self.session.cookies.jar}

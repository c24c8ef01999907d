"""Opening the archive client a store's settings describe.

:func:`connect_archive` is the one place that turns a resolved
:class:`~koa_middleware.config.StoreConfig` into a
:class:`~koa_middleware.client.remote_database.RemoteCalibrationDB`: the URL,
the credential and the answer limit all come from the settings, resolved once,
so the client reads nothing from the environment and its errors name where the
credential came from (the token argument, ``KOA_API_TOKEN``, or the Keck login
variables).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..config import StoreConfig

if TYPE_CHECKING:
    from .remote_database import RemoteCalibrationDB

logger = logging.getLogger(__name__)

__all__ = ["connect_archive"]


def connect_archive(
    config: StoreConfig, *, retries: int | None = None
) -> RemoteCalibrationDB | None:
    """Return the archive client ``config`` describes, or None when there is no archive to use.

    The public Keck archive needs credentials: with its default URL and none
    configured, nothing is connected (an info line says so) and the store
    works from its cache. Any other URL is used as given, with or without a
    credential. No request is sent here.

    Parameters
    ----------
    config : StoreConfig
        Resolved settings (:func:`koa_middleware.config.resolve_config`).
    retries : int | None
        Retries of a failed request (``koa-cal --retries``); None keeps the client's default.

    Returns
    -------
    RemoteCalibrationDB | None
        The client (close it, or use it as a context manager), or None.

    Raises
    ------
    ConfigurationError
        If the URL is invalid, the token empty, or only half of the Keck
        observer login is set.

    Examples
    --------
    >>> from koa_middleware.config import resolve_config
    >>> remote = connect_archive(resolve_config("hispec", "/tmp/cache", url="http://127.0.0.1:9"))
    >>> remote.url
    'http://127.0.0.1:9'
    >>> remote.close()
    """
    if not config.archive_configured:
        logger.info(
            "Not connecting to %s: no KOA_API_TOKEN or KECK_OBSERVER_EMAIL/"
            "KECK_OBSERVER_PASSWORD is set; working from the local cache.",
            config.url,  # the public archive's own URL (any other is connected): no secret in it
        )
        return None
    # The client and the HTTP library under it are imported only to connect: a store that
    # works from its cache alone starts without them.
    from .remote_database import RemoteCalibrationDB

    options = {}
    if config.max_answer_bytes is not None:
        options["max_answer_bytes"] = config.max_answer_bytes
    if retries is not None:
        options["retries"] = retries
    return RemoteCalibrationDB(
        config.instrument_name, url=config.url, credentials=config.credential, **options
    )

"""Downloading files from the Keck Observatory Archive (KOA), and the KOA service addresses.

:func:`download_koa` fetches one file through KOA's ``getKOA`` service. The
file appears atomically: it is written under a temporary name in the output
folder and renamed once complete, so an interrupted or refused download leaves
nothing behind. A progress bar shows only on a terminal (see
:func:`koa_middleware.client.downloads.progress_enabled`).

Examples
--------
>>> from koa_middleware.client.download import getkoa_url
>>> getkoa_url
'https://koa.ipac.caltech.edu/cgi-bin/getKOA/nph-getKOA?return_mode=json&'
"""

from __future__ import annotations

import contextlib
import copy
import http.cookiejar
import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm  # noqa: F401  (a name the reference's module carries)

from ..config import DEFAULT_URL
from ..errors import KOADownloadError
from ..records import ascii_int, safe_path
from .downloads import progress_bar

logger = logging.getLogger(__name__)

__all__ = [
    "BASE_URL_KECK",
    "DEFAULT_TIMEOUT",
    "KOADownloadError",
    "caliblist_url",
    "download_koa",
    "getkoa_url",
    "login_url",
]

#: KOA's login service.
login_url = "https://koa.ipac.caltech.edu/cgi-bin/KoaAPI/nph-koaLogin?"
#: KOA's file service; the file name is appended to it.
getkoa_url = "https://koa.ipac.caltech.edu/cgi-bin/getKOA/nph-getKOA?return_mode=json&"
#: KOA's calibration-list service.
caliblist_url = "https://koa.ipac.caltech.edu/cgi-bin/KoaAPI/nph-getCaliblist?"
#: The Keck calibrations API (:data:`koa_middleware.config.DEFAULT_URL`), with a final ``/``.
BASE_URL_KECK = f"{DEFAULT_URL}/"

#: Seconds allowed to connect, and then between any two pieces of the answer.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def _request_cookies(cookies: Any) -> httpx.Cookies | None:
    """Turn ``cookies`` into httpx cookies, leaving the caller's object untouched."""
    if cookies is None:
        return None
    if isinstance(cookies, httpx.Cookies):
        cookies = cookies.jar
    if isinstance(cookies, http.cookiejar.CookieJar):
        # A copy, so cookies the server sets never land in the caller's jar.
        jar = http.cookiejar.CookieJar()
        for cookie in cookies:
            jar.set_cookie(copy.copy(cookie))
        return httpx.Cookies(jar)
    if isinstance(cookies, Mapping):
        pairs = dict(cookies.items())
        if all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()):
            return httpx.Cookies(pairs)
    raise TypeError(
        "download_koa: cookies must be None, a dict of str names to str values, or a "
        f"cookie jar (http.cookiejar.CookieJar, httpx.Cookies); got {type(cookies).__name__}."
    )


def download_koa(
    koa_filename: str,
    output_dir: str,
    cookies: Mapping[str, str] | http.cookiejar.CookieJar | httpx.Cookies | None = None,
    *,
    url: str | None = None,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    progress: bool | None = None,
) -> str:
    """Download one file from the Keck Observatory Archive into ``output_dir``.

    The file is requested with ``GET`` at ``url + koa_filename`` and saved as
    ``output_dir/koa_filename``, replacing a file of that name. Only a
    complete answer with status 200 produces the file; otherwise nothing is
    left in ``output_dir``.

    Parameters
    ----------
    koa_filename : str
        The KOA file name, a plain name such as ``'HI.20240101.12345.fits'``
        (no folders, so it cannot leave ``output_dir``).
    output_dir : str
        The folder to save the file in (a str or path-like); created when
        missing.
    cookies : Mapping[str, str] | http.cookiejar.CookieJar | httpx.Cookies | None
        Cookies to send, e.g. those of a KOA login, for proprietary data.
        Cookies of a jar go only to the hosts they belong to; a dict's go to
        any host.
    url : str | None
        The file service the name is appended to; None uses the module's
        :data:`getkoa_url` (read at call time).
    timeout : float | httpx.Timeout
        Seconds allowed to connect and between pieces of the answer.
    progress : bool | None
        False hides the progress bar; otherwise it shows on a terminal only.

    Returns
    -------
    str
        The path of the downloaded file, ``os.path.join(output_dir, koa_filename)``.

    Raises
    ------
    InvalidRecordError
        If ``koa_filename`` is not a plain file name (a ``ValueError``); no
        request is made.
    TypeError
        If ``cookies`` is of another kind.
    KOADownloadError
        If the answer is not 200 (the message names the file and the HTTP
        status), or the connection fails or breaks off (a ``RuntimeError``).

    Examples
    --------
    >>> download_koa("HI.20240101.12345.fits", "raw")  # doctest: +SKIP
    'raw/HI.20240101.12345.fits'
    """
    destination = safe_path(output_dir, koa_filename)
    jar = _request_cookies(cookies)
    request_url = (getkoa_url if url is None else url) + koa_filename
    os.makedirs(output_dir, exist_ok=True)
    local_path = os.path.join(os.fspath(output_dir), koa_filename)
    logger.info("Downloading %r -> %r", koa_filename, local_path)
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=True, cookies=jar) as client,
            client.stream("GET", request_url) as response,
        ):
            if response.status_code != 200:
                message = (
                    f"Error downloading {koa_filename}: HTTP {response.status_code} "
                    f"{response.reason_phrase} from {request_url}; nothing was saved. Check "
                    "the file name and, for proprietary data, pass the cookies of a KOA login."
                )
                logger.error(message)
                raise KOADownloadError(message, url=request_url, status=response.status_code)
            _save_answer(response, destination, progress)
    except httpx.HTTPError as exc:
        message = (
            f"Error downloading {koa_filename}: the connection to {request_url} failed or broke "
            f"off ({type(exc).__name__}: {exc}); nothing was saved. Try again."
        )
        logger.error(message)
        raise KOADownloadError(message, url=request_url) from exc
    logger.info("Download complete: %r", local_path)
    return local_path


def _save_answer(response: httpx.Response, destination: Path, progress: bool | None) -> None:
    """Write the answer's body next to ``destination``, then rename it into place."""
    total = ascii_int(response.headers.get("content-length"))  # only for the progress bar
    # Same folder (so the rename is atomic), a name nothing else uses, and the usual
    # permissions (0666 less the umask), as if the file had been opened directly.
    partial = destination.with_name(f".{destination.name[:100]}.{uuid.uuid4().hex}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle, progress_bar(total, destination.name, progress) as bar:
            for chunk in response.iter_bytes():
                handle.write(chunk)
                bar.update(len(chunk))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise

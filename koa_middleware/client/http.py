"""The HTTP layer of the archive client: one connection pool, retries, and clear errors.

:class:`ArchiveSession` sends requests to the archive with the client's
credentials, retries idempotent ones after connection errors, 429 and 5xx
(exponential backoff, honouring ``Retry-After``), logs in again once after a
401 when the credential can (Keck login), and turns every failure into an
error that names the URL, the status and what to do:
:class:`~koa_middleware.errors.AuthenticationError` (401/403, naming the kind
of credential, never its value), :class:`~koa_middleware.errors.RemoteUnavailableError`
(unreachable) or :class:`~koa_middleware.errors.ArchiveError` (anything else,
including HTML pages, invalid JSON, bodies cut short and answers larger than
:attr:`ArchiveSession.max_answer_bytes`).

Every answer read here is bounded: its bytes are counted after decompression
(gzip and deflate are inflated here, a piece of at most :data:`_PIECE` bytes at
a time), so an endless body or a gzip bomb stops as soon as it passes the
limit, holding no more than that.
"""

from __future__ import annotations

import json as json_module
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from .. import __version__
from ..config import DEFAULT_MAX_ANSWER_BYTES
from ..errors import ArchiveError, AuthenticationError, RemoteUnavailableError
from ..records import ascii_int
from .auth import Anonymous, Credentials
from .http_transport import make_transport
from .json_stream import iter_json_items

logger = logging.getLogger(__name__)

__all__ = [
    "ArchiveSession",
    "DEFAULT_MAX_ANSWER_BYTES",
    "redact_url",
    "server_message",
]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Failures to open a connection: nothing was sent, so any request may go again.
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAX_DELAY = 30.0
#: The most bytes read of an error answer (only its first line is shown).
_MAX_ERROR_BYTES = 64 << 10
#: The most decompressed bytes produced from one piece of a compressed answer.
_PIECE = 1 << 20


def redact_url(url: str) -> str:
    """Return ``url`` without any user name or password in it."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    if parsed.userinfo:
        parsed = parsed.copy_with(username=None, password=None)
    return str(parsed)


def server_message(response: httpx.Response) -> str:
    """Return the archive's one-line explanation of an error answer, if it gave one."""
    try:
        body = response.content[:4096]
    except httpx.ResponseNotRead:
        return ""
    if not body:
        return ""
    if _looks_like_html(response, body):
        return "it sent an HTML page"
    try:
        data = json_module.loads(body)
    except ValueError:
        return ""
    if isinstance(data, Mapping):
        message = data.get("message") or data.get("detail") or data.get("error")
        if isinstance(message, str):
            return " ".join(message.split())[:300]
    return ""


def _looks_like_html(response: httpx.Response, body: bytes) -> bool:
    content_type = response.headers.get("content-type", "").lower()
    return "html" in content_type or body.lstrip()[:1] == b"<"


@dataclass
class _Call:
    """One call of :meth:`ArchiveSession.send`: what every attempt sends, and its re-login."""

    method: str
    url: str
    params: Mapping[str, Any] | None
    json_body: Any
    content: Callable[[], Iterable[bytes]] | None
    headers: Mapping[str, str] | None
    idempotent: bool
    stream: bool
    #: Whether the call's one re-login after a 401 was spent.
    renewed: bool = False


class _Retry(Exception):
    """An attempt failed in a way that is retried; ``reason`` is logged.

    ``response`` is the closed answer, when there was one, for its ``Retry-After``.
    """

    def __init__(self, reason: str, response: httpx.Response | None = None):
        super().__init__(reason)
        self.reason = reason
        self.response = response


class ArchiveSession:
    """Requests to one archive: a pooled :class:`httpx.Client`, credentials and retries.

    Parameters
    ----------
    credentials : Credentials
        What authenticates each request (see :mod:`koa_middleware.client.auth`).
    timeout : float
        Seconds to wait for data on a connection (read, write, pool).
    connect_timeout : float
        Seconds to wait for a connection.
    retries : int
        Retries of an idempotent request after a connection error, 429 or 5xx.
    backoff : float
        The first retry delay in seconds; it doubles with every retry.
    max_answer_bytes : int
        The most bytes of one answer that are read, counted after
        decompression; a larger answer raises :class:`ArchiveError`.

    Examples
    --------
    >>> from koa_middleware.client.auth import Anonymous
    >>> session = ArchiveSession(Anonymous(), retries=2)
    >>> session.retries
    2
    >>> session.close()
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ):
        self.credentials = credentials
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self.max_answer_bytes = max(1, int(max_answer_bytes))
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            follow_redirects=False,  # followed by ArchiveSession._send_handling_redirects
            headers={"User-Agent": f"koa_middleware/{__version__}"},
            limits=limits,
            transport=make_transport(limits),
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    @contextmanager
    def limited_retries(self, retries: int) -> Iterator[None]:
        """Retry at most ``retries`` times within the block (for quick probes)."""
        saved = self.retries
        self.retries = min(saved, retries)
        try:
            yield
        finally:
            self.retries = saved

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: Callable[[], Iterable[bytes]] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        stream: bool = False,
    ) -> httpx.Response:
        """Send a request with retries, and return the answer (any status).

        Idempotent requests are retried after connection errors, 429 and 5xx;
        any request is retried when the connection could not be opened at all
        (nothing was sent). A 401 with a renewable credential (Keck login) is
        retried once after logging in again. ``content`` is a factory so that a
        retry sends a fresh body. With ``stream`` the body is left unread for
        the caller (who must close the response; read it with
        :meth:`decoded_pieces`, :meth:`read_body` or :meth:`iter_json`, which
        are bounded); otherwise it is read here, at most :attr:`max_answer_bytes`
        of it (the first 64 KiB of an error answer), and a body cut short or too
        large raises :class:`ArchiveError`.

        The request goes through short steps, each a private method:
        ``_send_handling_retries`` (how many attempts, the pauses),
        ``_send_attempt`` (429 and 5xx, reading the answer), ``_send_or_retry``
        (broken connections), ``_send_handling_auth`` (credentials, the one
        re-login), ``_send_handling_redirects`` and ``_send_single_request``.
        """
        call = _Call(method, url, params, json_body, content, headers, idempotent, stream)
        return self._send_handling_retries(call)

    def _send_handling_retries(self, call: _Call) -> httpx.Response:
        """Make attempts at ``call`` until one gives the answer, at most 1 + :attr:`retries`.

        An attempt that may be tried again raises :class:`_Retry`; the pause
        before the next one doubles each time from :attr:`backoff` (at most
        :data:`_MAX_DELAY` seconds), or is what ``Retry-After`` asks if longer.
        """
        attempt = 0
        while True:
            try:
                return self._send_attempt(call, may_retry=attempt < self.retries)
            except _Retry as retry:
                attempt += 1
                self._pause(attempt, call.url, retry.reason, retry.response)

    def _send_attempt(self, call: _Call, *, may_retry: bool) -> httpx.Response:
        """One attempt: send, then ask again on 429 or 5xx, else read the answer.

        Raises
        ------
        _Retry
            When ``may_retry`` and the failure is one that is retried.
        """
        response = self._send_or_retry(call, may_retry=may_retry)
        status = response.status_code
        if status in _RETRY_STATUSES and call.idempotent and may_retry:
            response.close()
            raise _Retry(f"status {status}", response)
        if call.stream:
            return response
        return self._read_answer(call, response, may_retry=may_retry)

    def _send_or_retry(self, call: _Call, *, may_retry: bool) -> httpx.Response:
        """Send ``call``; a broken connection is retried or is :class:`RemoteUnavailableError`.

        A connection that could not be opened carried nothing, so any request
        is retried; other transport errors only for idempotent requests.
        """
        try:
            return self._send_handling_auth(call)
        except _NOTHING_SENT as exc:
            if may_retry:
                raise _Retry(type(exc).__name__) from exc
            raise self._unavailable(call.url, exc) from exc
        except httpx.TransportError as exc:
            if may_retry and call.idempotent:
                raise _Retry(type(exc).__name__) from exc
            raise self._unavailable(call.url, exc) from exc

    def _read_answer(
        self, call: _Call, response: httpx.Response, *, may_retry: bool
    ) -> httpx.Response:
        """Read the answer's body, bounded (see :meth:`read_body`, :meth:`read_error`).

        A body cut short is retried (idempotent requests) or raises
        :class:`ArchiveError`, as does one that is too large.
        """
        try:
            if response.is_success:
                self.read_body(response)
            else:
                self.read_error(response)
        except ArchiveError:
            response.close()
            raise
        except httpx.TransportError as exc:
            response.close()
            if may_retry and call.idempotent:
                raise _Retry("truncated answer") from exc
            raise self._cut_short(call.url, response.status_code, exc) from exc
        return response

    def _send_handling_auth(self, call: _Call) -> httpx.Response:
        """Send ``call`` with the credentials; after its first 401, log in again once.

        The refused answer is read (for its message) and closed. When the
        credential cannot be renewed (a token), it is the answer; otherwise
        the request goes again with the fresh credential, and any later 401
        of this call is the answer.
        """
        response = self._send_handling_redirects(self._build_request(call))
        if response.status_code != 401 or call.renewed:
            return response
        call.renewed = True
        self.read_error(response)
        if not self.credentials.renew():
            return response
        return self._send_handling_redirects(self._build_request(call))

    def _build_request(self, call: _Call) -> httpx.Request:
        """Build one attempt's request: current credentials, the caller's headers, a fresh body."""
        headers = dict(self.credentials.auth_headers())
        if call.headers:
            headers.update(call.headers)
        return self._client.build_request(
            call.method,
            call.url,
            params=call.params,
            json=call.json_body,
            content=call.content() if call.content is not None else None,
            headers=headers,
        )

    def _send_handling_redirects(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and follow redirects, at most the client's ``max_redirects``.

        httpx builds each next request (``Response.next_request``): it drops
        the ``Cookie`` header, and ``Authorization`` when the redirect leaves
        the origin (other than for http to https on the same host), so the
        credentials never follow a redirect elsewhere. Each redirect's body is
        read so that its connection is reused; the final answer is left unread.

        Raises
        ------
        httpx.TooManyRedirects
            After more than ``max_redirects`` redirects.
        """
        history: list[httpx.Response] = []
        while True:
            if len(history) > self._client.max_redirects:
                raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=request)
            response = self._send_single_request(request)
            response.history = list(history)
            if response.next_request is None:
                return response
            request = response.next_request
            history.append(response)
            try:
                response.read()
            finally:
                response.close()

    def _send_single_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` as it is, redirects not followed; the body is left unread."""
        return self._client.send(request, stream=True, follow_redirects=False)

    def decoded_pieces(self, response: httpx.Response, limit: int | None = None) -> Iterator[bytes]:
        """Yield an answer's body, decompressed, and stop once it passes ``limit`` bytes.

        Parameters
        ----------
        response : httpx.Response
            A streamed answer, not read yet.
        limit : int | None
            The most bytes (decompressed) to read; None means
            :attr:`max_answer_bytes`.

        Raises
        ------
        ArchiveError
            Once the body passes the limit (nothing more is read), or when its
            compressed data is invalid.
        httpx.TransportError
            If the connection breaks.
        """
        limit = self.max_answer_bytes if limit is None else limit
        total = 0
        for piece in _inflate(response):
            total += len(piece)
            if total > limit:
                display = redact_url(str(response.request.url))
                raise ArchiveError(
                    f"The archive at {display} sent an answer larger than {limit} bytes "
                    "(decompressed); reading stopped there. A calibrations API never sends "
                    "that much in one answer: report it to the archive operators, or, if the "
                    "answer is genuine, raise the limit (KOA_MAX_ANSWER_BYTES, e.g. 1GiB, or "
                    "max_answer_bytes of RemoteCalibrationDB).",
                    url=display,
                    status=response.status_code,
                )
            yield piece

    def read_body(self, response: httpx.Response, limit: int | None = None) -> bytes:
        """Read a streamed answer's body (bounded, see :meth:`decoded_pieces`) and keep it.

        Afterwards ``response.content`` holds the body, as after ``response.read()``.
        """
        try:
            body = b"".join(self.decoded_pieces(response, limit))
        finally:
            response.close()
        # What httpx's Response.read() does, with the bound above; httpx has no public
        # way to give a response its body, and a new Response would decode it again.
        response._content = body
        return body

    def read_error(self, response: httpx.Response) -> None:
        """Read the first bytes of an error answer (for its message) and close it."""
        if _is_read(response) or response.is_stream_consumed:
            return
        pieces: list[bytes] = []
        kept = 0
        try:
            for piece in _inflate(response):
                pieces.append(piece[: _MAX_ERROR_BYTES - kept])
                kept += len(pieces[-1])
                if kept >= _MAX_ERROR_BYTES:
                    break
        except (httpx.TransportError, ArchiveError):
            pass
        finally:
            response.close()
        response._content = b"".join(pieces)  # as in read_body: no public way to keep it

    def _pause(
        self, attempt: int, url: str, reason: str, response: httpx.Response | None = None
    ) -> None:
        delay = min(_MAX_DELAY, self.backoff * 2 ** (attempt - 1))
        if response is not None:
            retry_after = ascii_int(response.headers.get("retry-after", "").strip())
            if retry_after is not None:
                delay = min(_MAX_DELAY, max(delay, float(retry_after)))
        logger.warning(
            "Request to %s failed (%s); retry %d of %d in %.1f s.",
            redact_url(url),
            reason,
            attempt,
            self.retries,
            delay,
        )
        time.sleep(delay)

    def _unavailable(self, url: str, exc: Exception) -> RemoteUnavailableError:
        display = redact_url(url)
        return RemoteUnavailableError(
            f"The archive at {display} cannot be reached ({type(exc).__name__}: {exc}) after "
            f"{self.retries} retries; check KOA_CALIBRATIONS_URL and the network, or work "
            "from the local cache.",
            url=display,
        )

    def _cut_short(self, url: str, status: int, exc: Exception) -> ArchiveError:
        display = redact_url(url)
        return ArchiveError(
            f"The archive at {display} cut its answer short ({type(exc).__name__}: "
            f"{exc}); try again, and report it to the archive operators if it persists.",
            url=display,
            status=status,
        )

    def raise_for_status(self, response: httpx.Response, action: str) -> None:
        """Raise the error that fits a non-2xx answer; return for 2xx."""
        status = response.status_code
        if response.is_success:
            return
        display = redact_url(str(response.request.url))
        detail = server_message(response)
        detail = f" ({detail})" if detail else ""
        if status == 401 and isinstance(self.credentials, Anonymous):
            raise AuthenticationError(
                f"The archive at {display} refused a request with no credentials (401)"
                f"{detail} when asked to {action}; set KOA_API_TOKEN (or "
                "KECK_OBSERVER_EMAIL and KECK_OBSERVER_PASSWORD).",
                url=display,
                status=status,
            )
        if status == 401:
            raise AuthenticationError(
                f"The archive at {display} refused the {self.credentials.description} "
                f"(401){detail} when asked to {action}. Check that the credential is valid "
                "and not revoked (KOA_API_TOKEN, token=, or KECK_OBSERVER_EMAIL / "
                "KECK_OBSERVER_PASSWORD).",
                url=display,
                status=status,
            )
        if status == 403:
            raise AuthenticationError(
                f"The archive at {display} refused to let the {self.credentials.description} "
                f"{action} (403){detail}: the credential lacks the needed scope. Ask the "
                "archive operators for a token with the 'write' scope to add or upload.",
                url=display,
                status=status,
            )
        raise ArchiveError(
            f"The archive at {display} answered {status}{detail} when asked to {action}.",
            url=display,
            status=status,
        )

    def json(self, response: httpx.Response, action: str) -> Any:
        """Check an answer's status and return its JSON body, refusing HTML and invalid JSON."""
        self.raise_for_status(response, action)
        body = response.content
        if _looks_like_html(response, body[:512]):
            raise self._html_error(response, action)
        try:
            return json_module.loads(body)
        except ValueError as exc:
            raise self._invalid_json_error(response, action, exc) from exc

    def iter_json(self, response: httpx.Response, action: str) -> Iterator[tuple[bool, Any]]:
        """Parse a streamed 2xx answer while it arrives (see :func:`iter_json_items`).

        Yields ``(True, item)`` for each item of a top-level array as soon as it
        is complete, or ``(False, value)`` once for any other JSON value. The
        body is bounded by :attr:`max_answer_bytes`.

        Raises
        ------
        ArchiveError
            If the answer is an HTML page, invalid JSON or too large.
        httpx.TransportError
            If the connection breaks (the caller may ask again).
        """
        if "html" in response.headers.get("content-type", "").lower():
            raise self._html_error(response, action)
        first = bytearray()

        def pieces() -> Iterator[bytes]:
            for piece in self.decoded_pieces(response):
                if len(first) < 64:
                    first.extend(piece[:64])
                yield piece

        try:
            yield from iter_json_items(pieces())
        except ValueError as exc:
            if bytes(first).lstrip()[:1] == b"<":
                raise self._html_error(response, action) from exc
            raise self._invalid_json_error(response, action, exc) from exc

    def _invalid_json_error(
        self, response: httpx.Response, action: str, exc: ValueError
    ) -> ArchiveError:
        display = redact_url(str(response.request.url))
        return ArchiveError(
            f"The archive at {display} sent invalid JSON when asked to {action} ({exc}); "
            "the answer may have been cut short or the URL is not a calibrations API. "
            "Try again; if it persists, report it to the archive operators.",
            url=display,
            status=response.status_code,
        )

    def _html_error(self, response: httpx.Response, action: str) -> ArchiveError:
        display = redact_url(str(response.request.url))
        return ArchiveError(
            f"The archive at {display} sent an HTML page instead of JSON when asked to "
            f"{action}; check that KOA_CALIBRATIONS_URL points at the calibrations API "
            "(not a web page or a login portal).",
            url=display,
            status=response.status_code,
        )

    def shape_error(self, response: httpx.Response, expected: str) -> ArchiveError:
        display = redact_url(str(response.request.url))
        return ArchiveError(
            f"The archive at {display} sent an answer of an unexpected shape (expected "
            f"{expected}); check that KOA_CALIBRATIONS_URL points at a calibrations API.",
            url=display,
            status=response.status_code,
        )


def _is_read(response: httpx.Response) -> bool:
    """Return True when the response's body was read (``response.content`` is set)."""
    try:
        response.content  # noqa: B018 - raises ResponseNotRead until the body is read
    except httpx.ResponseNotRead:
        return False
    return True


def _inflate(response: httpx.Response) -> Iterator[bytes]:
    """Yield a streamed answer's body, decompressed a bounded piece at a time.

    gzip and deflate (what the client asks for) are inflated here with
    ``max_length``, so one small compressed piece never turns into a huge
    buffer; any other encoding goes through httpx's own decoders.
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        yield from response.iter_raw()
        return
    if encoding not in ("gzip", "x-gzip", "deflate"):
        yield from response.iter_bytes()
        return
    inflater = None
    try:
        for raw in response.iter_raw():
            if inflater is None:
                # deflate is zlib-wrapped as the standard says, or raw as some servers send it.
                wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
                if encoding == "deflate" and raw[:1] != b"\x78":
                    wbits = -zlib.MAX_WBITS
                inflater = zlib.decompressobj(wbits)
            piece = inflater.decompress(raw, _PIECE)
            while True:
                if piece:
                    yield piece
                if not inflater.unconsumed_tail:
                    break
                piece = inflater.decompress(inflater.unconsumed_tail, _PIECE)
        if inflater is not None and (tail := inflater.flush()):
            yield tail
    except zlib.error as exc:
        display = redact_url(str(response.request.url))
        raise ArchiveError(
            f"The archive at {display} sent invalid {encoding} data ({exc}); try again, and "
            "report it to the archive operators if it persists.",
            url=display,
            status=response.status_code,
        ) from exc

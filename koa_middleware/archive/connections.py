"""Connections under limits: request headers in time, a cap on open connections.

A client that opens a connection and sends half a request line, or nothing, holds a
file descriptor of the server for as long as it likes: uvicorn has no time limit on
request headers. :class:`ConnectionGuard` adds what the archive needs:

- a connection whose request headers are not complete ``header_timeout`` seconds
  after it opened (or after its previous answer) is closed, with a 408 when part of
  a request had arrived;
- at most ``max_connections`` are served at once. A new connection beyond that
  replaces the connection that has waited longest for its request headers, if
  longer than a quarter second (it is answered 503 and closed), so idle
  connections can never keep a real client out;
  when every connection is busy with a request, the new one is answered 503
  (``Retry-After: 1``), and beyond a few more it is closed at once;
- the event loop's "socket.accept() out of system resource" error (the process ran
  out of file descriptors) is logged once, then summed up at most every 10 s.

The guard hooks into uvicorn at two public seams: a subclass of the HTTP protocol
class (``uvicorn.Config(http=...)``) that sees connections open, receive data and
close, and an ASGI wrapper of the application that sees requests start and end. The
protocol marks the connection in a context variable while it hands data to uvicorn,
so the request task uvicorn creates then carries it to the ASGI wrapper.

Examples
--------
>>> guard = ConnectionGuard(ConnectionLimits(header_timeout=10, max_connections=500))
>>> config = uvicorn.Config(guard.wrap(app), http=guard.protocol_class())  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import logging
import resource
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "ConnectionGuard",
    "ConnectionLimits",
    "RateLimitedLog",
    "default_max_connections",
    "open_file_limit",
]

#: Seconds a client may take to send its request headers (``serve --header-timeout``).
DEFAULT_HEADER_TIMEOUT = 10.0
#: Descriptors kept for the process itself whatever the limit: the catalog and its
#: journal, files being uploaded or downloaded, logs, the event loop's own.
_MIN_ROOM = 64
#: The largest default cap, however high the file limit.
_MAX_DEFAULT = 16_384
#: Seconds a connection must have waited for its headers before a new one may replace
#: it: a client whose headers are on their way is never the one closed.
_EVICT_AFTER = 0.25
#: Seconds between two summaries of a repeated log line.
_LOG_EVERY = 10.0
#: The accept error of asyncio when the process has no descriptor left.
_ACCEPT_ERROR = "socket.accept() out of system resource"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The connection whose data uvicorn is handling; request tasks inherit it.
_CURRENT: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar(
    "koa_archive_connection", default=None
)


def open_file_limit() -> int:
    """The process's soft limit of open files (``ulimit -n``); 1,048,576 when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else int(soft)


def default_max_connections(nofile: int | None = None) -> int:
    """The default cap on open connections, sized to the file limit with room to spare.

    A quarter of the limit (at least 64 descriptors) stays for the process itself
    (catalog, files being sent or received, logs); of the rest, a sixteenth is kept
    for connections answered 503 beyond the cap.

    Examples
    --------
    >>> default_max_connections(1024)
    720
    >>> default_max_connections(128)
    60
    """
    nofile = open_file_limit() if nofile is None else nofile
    sockets = nofile - max(_MIN_ROOM, nofile // 4)
    return max(1, min(_MAX_DEFAULT, sockets - sockets // 16))


def _raw_answer(status: str, error: str, message: str, retry: bool = False) -> bytes:
    """A whole HTTP/1.1 answer with the archive's JSON error body, closing the connection."""
    body = json.dumps({"error": error, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if retry:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + body


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits of ``koa-archive serve`` on connections.

    Parameters
    ----------
    header_timeout : float
        Seconds a connection may take to send complete request headers, counted
        from when it opened or from its previous answer.
    max_connections : int
        Connections served at once.
    """

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_connections: int = 512

    @property
    def overflow(self) -> int:
        """Connections beyond the cap that still get a 503 before they are closed."""
        return max(4, self.max_connections // 16)


class RateLimitedLog:
    """Log a repeated event once, then a count of its repeats at most every ``every`` s.

    Examples
    --------
    >>> log = RateLimitedLog(logger, "refused %d connection(s)", every=10)
    >>> log.note()  # logs "refused 1 connection(s)"  # doctest: +SKIP
    """

    def __init__(
        self,
        target: logging.Logger,
        message: str,
        every: float = _LOG_EVERY,
        level: int = logging.WARNING,
    ):
        self.target = target
        self.message = message
        self.every = every
        self.level = level
        self.total = 0
        self._pending = 0
        self._last = -float("inf")

    def note(self, *args: Any) -> None:
        """Count one event; log it (with the events not yet logged) if the last line is old."""
        self.total += 1
        self._pending += 1
        now = time.monotonic()
        if now - self._last >= self.every:
            self.target.log(self.level, self.message, self._pending, *args)
            self._pending = 0
            self._last = now


class _Connection:
    """What the guard knows of one open connection."""

    __slots__ = ("guard", "transport", "rejected", "busy", "partial", "timer", "closed", "since")

    def __init__(self, guard: ConnectionGuard, transport: asyncio.Transport):
        self.guard = guard
        self.transport = transport
        self.rejected = False  # beyond the cap: its request is answered 503
        self.busy = 0  # requests being answered (more than one when pipelined)
        self.partial = False  # bytes arrived since the last answer
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.since = 0.0  # when it started waiting for request headers (loop time)

    def close(self, answer: bytes = b"") -> None:
        """Close the connection, first writing ``answer`` if it had started a request."""
        if self.closed or self.transport.is_closing():
            return
        if answer and self.partial:
            self.transport.write(answer)
        self.transport.close()


class ConnectionGuard:
    """Header time limit and connection cap of one server (see the module's text).

    Parameters
    ----------
    limits : ConnectionLimits
        The header timeout and the cap.
    """

    def __init__(self, limits: ConnectionLimits):
        self.limits = limits
        self.served = 0
        self.rejecting = 0
        # Connections waiting for request headers, longest-waiting first.
        self._waiting: collections.OrderedDict[int, _Connection] = collections.OrderedDict()
        self._header_timeouts = RateLimitedLog(
            logger,
            "closed %d connection(s) whose request headers did not arrive within %g s",
            level=logging.INFO,
        )
        self._over_cap = RateLimitedLog(
            logger,
            "turned away %d connection(s) (503 or closed): %d open, the limit (--max-connections)",
        )
        self._accept_errors = RateLimitedLog(
            logger,
            "could not accept %d connection(s): %s (file limit %d); lower --max-connections "
            "or raise the limit (ulimit -n)",
            level=logging.ERROR,
        )

    # -- the seams ---------------------------------------------------------------------
    def protocol_class(self, base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
        """A subclass of uvicorn's HTTP protocol (``base``, default h11) that this guard sees.

        h11 by default: it takes a whole request head before the application runs, and
        bounds it (16 KiB), whatever else is installed.
        """
        if base is None:
            from uvicorn.protocols.http.h11_impl import H11Protocol

            base = H11Protocol
        guard = self

        class GuardedProtocol(base):  # type: ignore[valid-type,misc]
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                self._koa_connection = guard._admit(transport)  # type: ignore[arg-type]

            def data_received(self, data: bytes) -> None:
                connection = self._koa_connection
                if not connection.busy:
                    connection.partial = True
                token = _CURRENT.set(connection)
                try:
                    super().data_received(data)
                finally:
                    _CURRENT.reset(token)

            def connection_lost(self, exc: Exception | None) -> None:
                guard._release(self._koa_connection)
                super().connection_lost(exc)

        GuardedProtocol.__name__ = GuardedProtocol.__qualname__ = f"Guarded{base.__name__}"
        return GuardedProtocol

    def wrap(self, app: App) -> App:
        """The ASGI application ``app``, told by the guard which requests to answer 503."""

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            connection = _CURRENT.get() if scope["type"] == "http" else None
            if connection is None:
                await app(scope, receive, send)
                return
            if connection.rejected:
                await self._answer_503(send)
                return
            self._request_started(connection)
            try:
                await app(scope, receive, send)
            finally:
                self._request_finished(connection)

        return guarded

    def exception_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The event loop's exception handler: accept errors are logged rate-limited."""
        if context.get("message") == _ACCEPT_ERROR:
            exc = context.get("exception")
            self._accept_errors.note(exc.strerror if exc else "?", open_file_limit())
            return
        loop.default_exception_handler(context)

    # -- connections ---------------------------------------------------------------------
    def _admit(self, transport: asyncio.Transport) -> _Connection:
        connection = _Connection(self, transport)
        if self.served >= self.limits.max_connections and self._waiting:
            # The longest-waiting idle connection makes room: a real client sends its
            # headers at once, so idle connections can never keep it out.
            oldest = next(iter(self._waiting.values()))
            if asyncio.get_running_loop().time() - oldest.since >= _EVICT_AFTER:
                oldest.close(_raw_answer("503 Service Unavailable", *self._evicted_text(), True))
                self._forget(oldest)
        if self.served < self.limits.max_connections:
            self.served += 1
            self._wait_for_headers(connection)
            return connection
        connection.rejected = True
        if self.rejecting >= self.limits.overflow:
            # Nothing more is spent on it: a descriptor is precious now.
            connection.closed = True
            transport.abort()
            self._over_cap.note(self.served)
            return connection
        self.rejecting += 1
        self._arm(connection)
        return connection

    def _evicted_text(self) -> tuple[str, str]:
        return (
            "service_unavailable",
            f"The archive has {self.limits.max_connections} connections open, its limit, and "
            "this one had not sent its request; send it again.",
        )

    def _release(self, connection: _Connection) -> None:
        if connection.closed:
            return
        self._forget(connection)

    def _forget(self, connection: _Connection) -> None:
        """Count ``connection`` as gone (it is closed or closing)."""
        connection.closed = True
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None
        self._waiting.pop(id(connection), None)
        if connection.rejected:
            self.rejecting -= 1
        else:
            self.served -= 1

    def _wait_for_headers(self, connection: _Connection) -> None:
        connection.since = asyncio.get_running_loop().time()
        self._waiting[id(connection)] = connection
        self._arm(connection)

    def _arm(self, connection: _Connection) -> None:
        if connection.timer is not None:
            connection.timer.cancel()
        loop = asyncio.get_running_loop()
        connection.timer = loop.call_later(self.limits.header_timeout, self._expired, connection)

    def _expired(self, connection: _Connection) -> None:
        connection.timer = None
        if connection.closed or connection.busy:
            return
        self._header_timeouts.note(self.limits.header_timeout)
        message = (
            f"The request headers did not arrive within {self.limits.header_timeout:g} seconds, "
            "so the archive closed the connection; send the request again."
        )
        connection.close(_raw_answer("408 Request Timeout", "request_timeout", message))
        self._forget(connection)

    def _request_started(self, connection: _Connection) -> None:
        connection.busy += 1
        connection.partial = False
        self._waiting.pop(id(connection), None)
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None

    def _request_finished(self, connection: _Connection) -> None:
        connection.busy -= 1
        if connection.busy == 0 and not connection.closed and not connection.transport.is_closing():
            # The next request's headers get the same time as the first one's.
            self._wait_for_headers(connection)

    async def _answer_503(self, send: Send) -> None:
        self._over_cap.note(self.served)
        body = json.dumps(
            {
                "error": "service_unavailable",
                "message": f"The archive is answering {self.limits.max_connections} "
                "connections, its limit; try again in a moment.",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"retry-after", b"1"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

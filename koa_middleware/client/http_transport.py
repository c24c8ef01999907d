"""The archive client's HTTP transport: httpx's own, reading large answers in large pieces.

httpcore receives a response 64 KiB at a time, and every piece takes a trip
through its HTTP parser and then through the download's writing and hashing.
For files of hundreds of MiB, larger pieces pay: a 512 MiB download into the
cache took 0.92-1.05 s instead of 1.21-1.35 s (measured on a 2-core
machine). For a file of 1 MiB, one large piece cost half again as much CPU as
httpcore's pieces (fresh memory for every read). So the transport here, httpx's
standard one over a connection pool whose network streams (httpcore's
documented network-backend extension point) are wrapped, asks the socket for
up to :data:`READ_BYTES` at a time only once an answer has brought
:data:`LARGE_AFTER_BYTES`. The HTTP parser accepts any amount of data per
read, so nothing else changes.

When the environment names a proxy (``HTTPS_PROXY``, ``HTTP_PROXY``,
``ALL_PROXY``, with ``NO_PROXY``), httpx's own set-up is kept, so that its
proxy handling applies exactly as users expect.
"""

from __future__ import annotations

import logging
import ssl
import urllib.request
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

logger = logging.getLogger(__name__)

__all__ = ["READ_BYTES", "LargeReadBackend", "make_transport"]

#: The most bytes asked of the socket in one read.
READ_BYTES = 1 << 20
#: Bytes of one answer read in httpcore's own pieces before reads grow to READ_BYTES.
LARGE_AFTER_BYTES = 8 << 20


class _LargeReadStream(httpcore.NetworkStream):
    """A network stream whose reads grow to :data:`READ_BYTES` once an answer proves large.

    Up to :data:`LARGE_AFTER_BYTES` of an answer are read as httpcore asks
    (64 KiB at a time): for answers of a few MiB, larger reads cost more
    than they save. Sending the next request starts the count again.
    """

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream
        self._received = 0

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._received >= LARGE_AFTER_BYTES:
            max_bytes = max(max_bytes, READ_BYTES)
        data = self._stream.read(max_bytes, timeout)
        self._received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._received = 0
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _LargeReadStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class LargeReadBackend(httpcore.NetworkBackend):
    """httpcore's standard synchronous backend, with :class:`_LargeReadStream` streams.

    Examples
    --------
    >>> pool = httpcore.ConnectionPool(network_backend=LargeReadBackend())
    >>> pool.close()
    """

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _LargeReadStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _LargeReadStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def make_transport(limits: httpx.Limits) -> httpx.HTTPTransport | None:
    """Return httpx's standard transport over a pool of :class:`LargeReadBackend` streams.

    Parameters
    ----------
    limits : httpx.Limits
        Connection limits of the pool.

    Returns
    -------
    httpx.HTTPTransport | None
        A transport that verifies TLS with the default certificates (and
        ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``) like httpx's default; None when
        the environment sets a proxy (httpx then applies it; a client given a
        transport of its own would ignore it).

    Examples
    --------
    >>> transport = make_transport(httpx.Limits(max_connections=4))
    >>> with httpx.Client(transport=transport) as client:
    ...     pass
    """
    if any(scheme != "no" for scheme in urllib.request.getproxies()):
        logger.debug("A proxy is configured in the environment: httpx's own transport is used.")
        return None
    transport = httpx.HTTPTransport(limits=limits)
    # httpx builds its pool without a way to pass a network backend; only the
    # pool is replaced, so requests, responses and errors stay httpx's own.
    if not isinstance(getattr(transport, "_pool", None), httpcore.ConnectionPool):
        logger.debug("This httpx keeps its pool elsewhere: its default reads apply.")
        return transport
    transport._pool.close()
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=LargeReadBackend(),
    )
    return transport

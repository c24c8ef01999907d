"""A real HTTP server on 127.0.0.1 whose answers a test scripts, bad ones included.

It stands in for a misbehaving archive (HTML pages, invalid JSON, bodies cut
short, hostile zips, corrupt files) or a login service, and counts every
request it gets.

Examples
--------
>>> with ScriptedHTTPServer() as server:  # doctest: +SKIP
...     server.route("GET", "/api/hispec/lastUpdated", json_answer({"last_updated": None}))
...     httpx.get(server.url + "/api/hispec/lastUpdated").json()
{'last_updated': None}
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import socket
import threading
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

__all__ = [
    "ScriptedHTTPServer",
    "Exchange",
    "json_answer",
    "raw_answer",
    "truncated_answer",
    "file_answer",
    "zip_bytes",
]


@dataclass
class Exchange:
    """One request as the handler sees it, with helpers to answer it."""

    handler: BaseHTTPRequestHandler
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)

    def send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        """Answer with ``body``; ``length`` declares another Content-Length (to cut it short)."""
        handler = self.handler
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()
        if length is not None and length != len(body):
            self.hang_up()

    def hang_up(self) -> None:
        """Close the connection at once (the answer stays incomplete)."""
        self.handler.close_connection = True
        try:
            self.handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


Route = Callable[[Exchange], None]


def json_answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Route:
    """A route that answers with ``data`` as JSON."""
    payload = json.dumps(data).encode()
    return lambda ex: ex.send(status, payload, headers=headers)


def raw_answer(body: bytes, status: int = 200, content_type: str = "application/json") -> Route:
    """A route that answers with ``body`` as it is."""
    return lambda ex: ex.send(status, body, content_type=content_type)


def truncated_answer(body: bytes, declared: int, status: int = 200) -> Route:
    """A route that promises ``declared`` bytes, sends ``body`` and hangs up."""
    return lambda ex: ex.send(status, body, length=declared)


def file_answer(data: bytes, cut_first_after: int | None = None) -> Route:
    """A v2 ``files/ID`` route with Range support.

    With ``cut_first_after``, the first answer hangs up after that many bytes.
    """
    etag = '"' + hashlib.md5(data).hexdigest() + '"'
    state = {"answers": 0}

    def route(ex: Exchange) -> None:
        state["answers"] += 1
        start = 0
        status = 200
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        requested = ex.headers.get("range", "")
        if_range = ex.headers.get("if-range")
        if requested.startswith("bytes=") and (if_range is None or if_range == etag):
            start = int(requested[len("bytes=") :].split("-", 1)[0])
            if start >= len(data):
                ex.send(416, b"", headers={"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if state["answers"] == 1 and cut_first_after is not None:
            ex.send(status, body[:cut_first_after], "application/octet-stream", headers, len(body))
            return
        ex.send(status, body, "application/octet-stream", headers)

    return route


def zip_bytes(members: list[tuple[str, bytes]], symlink: bool = False) -> bytes:
    """Build a zip holding ``members`` (name, bytes); ``symlink`` marks them as links."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            if symlink:
                info.external_attr = (0o120777 << 16) | 0
            archive.writestr(info, data)
    return buffer.getvalue()


class ScriptedHTTPServer:
    """A threading HTTP/1.1 server on 127.0.0.1:<free port> that answers from a route table.

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:PORT``.
    hits : Counter
        Requests per ``(method, path)``.
    exchanges : list[Exchange]
        Every request, in order.
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.hits: Counter[tuple[str, str]] = Counter()
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("scripted server: " + format, *args)

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                exchange = Exchange(
                    handler=self,
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                key = (self.command, parts.path)
                with server._lock:
                    server.hits[key] += 1
                    server.exchanges.append(exchange)
                    route = server.routes.get(key)
                if route is None:
                    exchange.send(404, b'{"error": "not_found", "message": "No such route."}')
                    return
                route(exchange)

            do_GET = do_POST = do_PUT = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def route(self, method: str, path: str, answer: Route) -> None:
        """Answer ``method path`` with ``answer``."""
        with self._lock:
            self.routes[(method, path)] = answer

    def start(self) -> ScriptedHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

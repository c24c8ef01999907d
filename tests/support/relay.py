"""A TCP relay on 127.0.0.1 in front of a real server: it slows answers down and notes requests.

Clients talk to the relay's port; the relay forwards every byte to the server
and back. Answers can be throttled (so that a test can act while a download is
under way), and the head of every HTTP request that passes is recorded (so
that a test can count downloads or see ``Range`` headers).

Examples
--------
>>> with Relay(server.port, rate=20e6) as relay:  # doctest: +SKIP
...     url = relay.rewrite(server.base_url)
...     ...
...     relay.count("GET /api/calibrations/hispec/files/")
1
"""

from __future__ import annotations

import logging
import socket
import threading
import time

logger = logging.getLogger(__name__)

__all__ = ["Relay"]

_CHUNK = 16 * 1024
#: How far a throttled answer may run ahead of its rate after a pause.
_BURST_SECONDS = 0.05


class Relay:
    """Forward 127.0.0.1:<free port> to 127.0.0.1:``target_port``.

    Parameters
    ----------
    target_port : int
        The server's port.
    rate : float | None
        Bytes per second from the server to the client (None: full speed).

    Attributes
    ----------
    port : int
        The relay's port.
    heads : list[str]
        The head (request line and headers) of every HTTP request relayed.
    """

    def __init__(self, target_port: int, rate: float | None = None):
        self.target_port = target_port
        self.rate = rate
        self.heads: list[str] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def rewrite(self, url: str) -> str:
        """Return ``url`` with the server's port replaced by the relay's."""
        return url.replace(f":{self.target_port}", f":{self.port}", 1)

    def count(self, text: str) -> int:
        """How many relayed request heads contain ``text``."""
        with self._lock:
            return sum(text in head for head in self.heads)

    def start(self) -> Relay:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # A small receive buffer, so that little of an answer is in flight when the
            # server dies: what the client gets is what the server had sent by then.
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            upstream.settimeout(5)
            upstream.connect(("127.0.0.1", self.target_port))
            upstream.settimeout(None)
        except OSError:
            upstream.close()
            client.close()
            return
        with self._lock:
            self._sockets += [client, upstream]
        threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
        self._answers(upstream, client)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to server, noting each request head (bodies are skipped by Content-Length)."""
        buffer = b""
        skip = 0
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
                buffer += data
                while True:
                    if skip:
                        taken = min(skip, len(buffer))
                        buffer, skip = buffer[taken:], skip - taken
                        if skip:
                            break
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = buffer[:end].decode("latin-1")
                    buffer = buffer[end + 4 :]
                    with self._lock:
                        self.heads.append(head)
                    for line in head.split("\r\n")[1:]:
                        name, _, value = line.partition(":")
                        if name.strip().lower() == "content-length":
                            skip = int(value.strip() or 0)
        except OSError:
            pass
        finally:
            _close(upstream, client)

    def _answers(self, upstream: socket.socket, client: socket.socket) -> None:
        """Server to client, throttled to ``rate``.

        A pause (a kept-alive connection between requests) earns no credit: the
        bytes after it flow at ``rate`` too, not in a burst that makes up for it.
        """
        due = time.monotonic()
        try:
            while data := upstream.recv(_CHUNK):
                client.sendall(data)
                if self.rate:
                    now = time.monotonic()
                    due = max(due, now - _BURST_SECONDS) + len(data) / self.rate
                    if due > now:
                        time.sleep(due - now)
        except OSError:
            pass
        finally:
            _close(upstream, client)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass

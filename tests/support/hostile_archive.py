"""A scripted archive that sends what no honest archive would: endless or huge answers.

Built on :mod:`support.scripted_http` (a real HTTP/1.1 server on 127.0.0.1),
it adds routes that stream their body piece by piece without a length, so
that a client which does not stop reading would read (and hold) everything.
Each such route counts what it sent and stops by itself after ``cap`` bytes,
so a test against a client that never stops still ends (and fails). When the
client hangs up, the route notices at its next write and ends; a test waits
for :meth:`StreamCount.finished` before it asserts on the count.

Examples
--------
>>> with HostileArchive(protocol=2) as archive:  # doctest: +SKIP
...     count = archive.endless("GET", archive.path("changes"), b'{"records": [', b" " * 65536)
...     ...
...     assert count.finished() and count.sent < 16 << 20
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from support.scripted_http import Exchange, ScriptedHTTPServer, json_answer

__all__ = ["HostileArchive", "StreamCount", "FileAnswer", "FileScript", "API"]

API = "/api/calibrations"
#: How long a test waits for a route to see that the client hung up.
FINISH_SECONDS = 60.0


@dataclass
class StreamCount:
    """What a streaming route sent: bytes on the wire and bytes before compression."""

    sent: int = 0
    uncompressed: int = 0
    capped: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def finished(self, timeout: float = FINISH_SECONDS) -> bool:
        """Wait until the route ended (the client hung up, or the cap was reached)."""
        return self.done.wait(timeout)


@dataclass
class FileAnswer:
    """One answer of a scripted ``files/ID`` route (see :meth:`HostileArchive.file_answers`).

    Attributes
    ----------
    status : int
        The HTTP status.
    body : bytes
        The body, or its first part when ``endless`` is set.
    headers : dict
        More headers (Content-Range, a Content-Length that ``endless`` then exceeds).
    declared : int | None
        A Content-Length other than ``len(body)``: the answer hangs up after
        ``body``, cut short.
    endless : bytes | None
        After ``body``, send this piece again and again, until the client hangs
        up or the route's ``cap`` is reached.
    """

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    declared: int | None = None
    endless: bytes | None = None


@dataclass
class FileScript:
    """What a scripted ``files/ID`` route saw and sent."""

    #: The Range header of each request, in order (None: the whole file asked for).
    ranges: list[str | None] = field(default_factory=list)
    #: What each of its endless answers sent, in order.
    counts: list[StreamCount] = field(default_factory=list)


def _stream(
    ex: Exchange,
    pieces: Iterator[bytes],
    count: StreamCount,
    headers: dict[str, str] | None = None,
    status: int = 200,
    content_type: str = "application/json",
) -> None:
    """Answer with a body that ends when the connection closes (no Content-Length)."""
    handler = ex.handler
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        for piece in pieces:
            handler.wfile.write(piece)
            count.sent += len(piece)
        handler.wfile.flush()
    except OSError:
        pass  # the client hung up: what we wanted to see
    finally:
        handler.close_connection = True
        ex.hang_up()
        count.done.set()


def _repeat(prefix: bytes, piece: bytes, cap: int, count: StreamCount) -> Iterator[bytes]:
    yield prefix
    count.uncompressed += len(prefix)
    while count.uncompressed < cap:
        yield piece
        count.uncompressed += len(piece)
    count.capped = True


class HostileArchive:
    """A scripted archive speaking ``protocol`` (1 or 2) for instrument ``hispec``.

    Attributes
    ----------
    server : ScriptedHTTPServer
        The server (``hits`` counts requests per route).
    base_url : str
        The BASE URL to give the client.
    """

    def __init__(self, protocol: int = 2, instrument: str = "hispec"):
        self.protocol = protocol
        self.instrument = instrument
        self.server = ScriptedHTTPServer()
        self.base_url = ""
        #: Released by a test to let a held route go on (see :meth:`held_list`).
        self.release = threading.Event()

    def __enter__(self) -> HostileArchive:
        self.server.start()
        self.base_url = self.server.url + API
        if self.protocol >= 2:
            self.route("GET", f"{API}/healthz", json_answer({"status": "ok", "protocol": 2}))
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.stop()

    def path(self, route: str) -> str:
        """The path of an instrument route, e.g. ``path("changes")``."""
        return f"{API}/{self.instrument}/{route}"

    def route(self, method: str, path: str, answer: Callable[[Exchange], None]) -> None:
        self.server.route(method, path, answer)

    def hits(self, route: str) -> int:
        """Requests so far to an instrument route."""
        return self.server.hits[("GET", self.path(route))]

    # -- the bad answers ---------------------------------------------------------
    def endless(
        self,
        path: str,
        prefix: bytes,
        piece: bytes,
        cap: int = 256 << 20,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> StreamCount:
        """``GET path`` answers ``prefix`` then ``piece`` again and again (up to ``cap``)."""
        count = StreamCount()

        def answer(ex: Exchange) -> None:
            _stream(ex, _repeat(prefix, piece, cap, count), count, headers, 200, content_type)

        self.route("GET", path, answer)
        return count

    def gzip_bomb(self, path: str, prefix: bytes = b"[", cap: int = 256 << 20) -> StreamCount:
        """``GET path`` answers a gzip body that inflates to ``prefix`` and endless spaces.

        Each MiB of spaces compresses to about a KiB, so the wire carries little
        while a client that inflates everything holds ``cap`` bytes.
        """
        count = StreamCount()
        block = b" " * (1 << 20)

        def pieces() -> Iterator[bytes]:
            deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            for data in _repeat(prefix, block, cap, count):
                out = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
                if out:
                    yield out
            yield deflater.flush()

        def answer(ex: Exchange) -> None:
            _stream(ex, pieces(), count, {"Content-Encoding": "gzip"})

        self.route("GET", path, answer)
        return count

    def file_answers(
        self, cal_id: str, answers: list[FileAnswer], cap: int = 256 << 20
    ) -> FileScript:
        """``GET files/ID`` answers ``answers`` in turn, the last one again and again.

        The Range header of every request is noted, so a test sees how the
        client resumed (or started over).
        """
        script = FileScript()

        def answer(ex: Exchange) -> None:
            scripted = answers[min(len(script.ranges), len(answers) - 1)]
            script.ranges.append(ex.headers.get("range"))
            if scripted.endless is None:
                ex.send(
                    scripted.status,
                    scripted.body,
                    "application/octet-stream",
                    scripted.headers,
                    scripted.declared,
                )
                return
            count = StreamCount()
            script.counts.append(count)
            _stream(
                ex,
                _repeat(scripted.body, scripted.endless, cap, count),
                count,
                scripted.headers,
                scripted.status,
                "application/octet-stream",
            )

        self.route("GET", self.path(f"files/{cal_id}"), answer)
        return script

    def stuck_changes(self, records: list[dict], stuck_at: int = 5, give_up: int = 50) -> None:
        """A changes feed whose ``next`` stops moving at ``stuck_at`` (with more to come).

        After ``give_up`` requests it says there is no more, so a client that
        loops still ends (having asked ``give_up`` times).
        """

        def answer(ex: Exchange) -> None:
            since = int(ex.query.get("since", ["0"])[0])
            more = self.hits("changes") < give_up
            page = {"records": records, "next": max(since, stuck_at), "more": more}
            ex.send(200, json.dumps(page).encode())

        self.route("GET", self.path("changes"), answer)

    def held_list(self, records: list[dict], hold_after: int) -> dict[str, Any]:
        """A v1 query answer: one JSON array, sent up to record ``hold_after``, then held.

        The rest is sent once the test sets :attr:`release` (or after
        ``FINISH_SECONDS``, noted as ``state["timed_out"]``), so a client that
        reads the whole answer before handing out records would wait.
        """
        state: dict[str, Any] = {"timed_out": False}
        items = [json.dumps(rec).encode() for rec in records]
        first = b"[" + b",".join(items[:hold_after]) + (b"," if hold_after < len(items) else b"")
        rest = b",".join(items[hold_after:]) + b"]"

        def pieces() -> Iterator[bytes]:
            yield first
            state["timed_out"] = not self.release.wait(FINISH_SECONDS)
            yield rest

        def answer(ex: Exchange) -> None:
            _stream(ex, pieces(), StreamCount())

        self.route("GET", self.path("query"), answer)
        return state

"""Idle and slow connections: the archive closes them and keeps answering everyone else.

Half-sent request headers are closed after ``--header-timeout``; at most
``--max-connections`` are served at once (idle ones make room, busy ones leave a 503);
a body dripping a byte at a time is dropped at ``--body-timeout``; out of file
descriptors, the server logs the accept error a few times, not once per attempt.
Every socket is on 127.0.0.1, every loop is bounded.
"""

from __future__ import annotations

import json
import select
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

import httpx
import pytest

from support.archive import ArchiveServer, md5_hex
from support.raw_http import answer_is_whole

#: The most any test waits for something that must happen.
PATIENCE = 30.0


def wait_for(condition: Callable[[], bool], seconds: float = PATIENCE) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def address(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    return parts.hostname, parts.port


def half_request(base: str) -> bytes:
    """The start of a request line, never finished."""
    return f"GET {urlsplit(base).path}/heal".encode()


def is_closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (what it sent before is read and dropped)."""
    while select.select([sock], [], [], 0)[0]:
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
    return False


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (PATIENCE s at most)."""
    sock.settimeout(PATIENCE)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


@contextmanager
def sockets(base: str, count: int, first: bytes = b"") -> Iterator[list[socket.socket]]:
    """``count`` connections to the archive, each having sent ``first``, closed at the end."""
    with ExitStack() as stack:
        opened = []
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection(address(base), timeout=PATIENCE))
            if first:
                sock.sendall(first)
            opened.append(sock)
        yield opened


def health(base: str) -> int:
    with httpx.Client(timeout=PATIENCE) as client:
        return client.get(base + "/healthz").status_code


def test_half_sent_headers_are_closed_after_the_header_timeout(tmp_path):
    with ArchiveServer(tmp_path / "archive", extra_args=("--header-timeout", "1")) as server:
        base = server.base_url
        with sockets(base, 20, half_request(base)) as idle, sockets(base, 5) as silent:
            answers = [read_until_closed(sock) for sock in idle]
            assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), answers
            body = json.loads(answers[0].partition(b"\r\n\r\n")[2])
            assert body["error"] == "request_timeout" and "1 seconds" in body["message"]
            # A connection that sent nothing is closed without a word.
            assert [read_until_closed(sock) for sock in silent] == [b""] * 5
        # After an answer, the next request's headers get no more time than the first's.
        with socket.create_connection(address(base), timeout=PATIENCE) as sock:
            host = f"Host: {urlsplit(base).netloc}"
            sock.sendall(f"GET {urlsplit(base).path}/healthz HTTP/1.1\r\n{host}\r\n\r\n".encode())
            first = b""
            while not answer_is_whole(first) and (chunk := sock.recv(65536)):
                first += chunk
            assert first.startswith(b"HTTP/1.1 200 ")
            sock.sendall(half_request(base))
            assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
        assert health(base) == 200


def test_idle_connections_make_room_at_the_connection_limit(tmp_path):
    options = ("--max-connections", "4", "--header-timeout", "60")
    with ArchiveServer(tmp_path / "archive", extra_args=options) as server:
        base = server.base_url
        with sockets(base, 4, half_request(base)) as first:
            time.sleep(0.5)  # setup: older than a client whose headers are on their way
            with sockets(base, 4, half_request(base)) as second:
                # Each new connection replaced one that had waited longer.
                answers = [read_until_closed(sock) for sock in first]
                assert all(a.startswith(b"HTTP/1.1 503 ") for a in answers), answers
                assert b"retry-after: 1" in answers[0].lower()
                assert not any(map(is_closed, second))
                # A client is served: the longest-waiting idle connection makes room.
                assert wait_for(lambda: health(base) == 200)
                assert wait_for(lambda: is_closed(second[0]))
        assert health(base) == 200


def upload_head(base: str, token: str, length: int) -> bytes:
    parts = urlsplit(base)
    return (
        f"PUT {parts.path}/hispec/files/{uuid.uuid4()} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nX-File-MD5: {md5_hex(b'x' * length)}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_busy_connections_at_the_limit_leave_a_503(start_archive):
    archive = start_archive(extra_args=("--max-connections", "2", "--body-timeout", "60"))
    base, token = archive.base, archive.tokens["write"]
    incoming = archive.root / "files" / ".incoming"
    with sockets(base, 2) as busy:
        for sock in busy:  # two uploads under way: the server is answering both
            sock.sendall(upload_head(base, token, 100_000) + b"x" * 10_000)
        assert wait_for(lambda: len(list(incoming.glob("*.part"))) == 2)
        with httpx.Client(timeout=PATIENCE) as client:
            response = client.get(base + "/healthz")
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"] == "service_unavailable"
    # Once those connections are gone, the archive answers again.
    assert wait_for(lambda: health(base) == 200)
    assert wait_for(lambda: not any(incoming.glob("*.part")))


@pytest.mark.parametrize("route", ["upload", "add"])
def test_a_dripping_body_is_dropped_at_the_body_timeout(start_archive, snapshot, route):
    archive = start_archive(extra_args=("--body-timeout", "1"))
    before = snapshot(archive)
    base, token = archive.base, archive.tokens["write"]
    parts = urlsplit(base)
    if route == "upload":
        head = upload_head(base, token, 1000)
    else:
        head = (
            f"POST {parts.path}/hispec/add HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n"
        ).encode()
    with socket.create_connection(address(base), timeout=PATIENCE) as sock:
        sock.sendall(head)
        # A byte every 0.2 s: never a pause as long as the body timeout.
        for _ in range(int(PATIENCE / 0.2)):
            if select.select([sock], [], [], 0.2)[0]:
                break
            sock.sendall(b"[" if route == "add" else b"x")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "request_timeout"
    assert snapshot(archive) == before
    assert not any((archive.root / "files" / ".incoming").glob("*.part"))


class LimitedServer(ArchiveServer):
    """An archive server started under ``prlimit --nofile=N``."""

    def __init__(self, *args, nofile: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.nofile = nofile

    def _argv(self) -> list[str]:
        return ["prlimit", f"--nofile={self.nofile}:{self.nofile}", *super()._argv()]


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_out_of_file_descriptors_the_server_recovers_and_logs_little(tmp_path):
    # A cap above what 128 descriptors allow, so that accept itself fails.
    options = ("--max-connections", "1000", "--header-timeout", "2")
    with LimitedServer(tmp_path / "archive", nofile=128, extra_args=options) as server:
        base = server.base_url
        with sockets(base, 300, half_request(base)) as idle:
            assert wait_for(lambda: "could not accept" in server.log_text())
            # The idle connections are closed in time, and the server answers again.
            assert wait_for(lambda: all(map(is_closed, idle[:50])))
            assert wait_for(lambda: health(base) == 200)
        log = server.log_text()
    assert "Too many open files" in log and "ulimit -n" in log
    assert log.count("could not accept") < 20, log[-3000:]
    assert "out of system resource" not in log

"""The archive keeps answering while it parses and checks a large ``/add`` body.

Parsing and validating an ``add`` body is CPU work done in a worker thread: a
``/healthz`` asked on another connection once a large body has been sent is
answered before that ``add``, whose checks are still running.
"""

from __future__ import annotations

import json
import selectors
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from support.archive import make_record
from support.raw_http import answer_is_whole

RECORDS = 10_000  # the default limit of one add request
COLUMNS = 300  # columns each record's checks go through


def slow_bad_body() -> bytes:
    """About 40 MB: 10,000 wide records, each refused only by its last column (a NUL)."""
    record = make_record(**{f"k{i:03d}": i for i in range(COLUMNS)}, zz="a\x00b")
    one = json.dumps(record).encode()
    return b"[" + b",".join([one] * RECORDS) + b"]"


def answers_in_order(connections: dict[str, socket.socket]) -> tuple[list[str], dict[str, bytes]]:
    """Read each connection until its answer is whole; return the names in the order the
    answers completed, and the answers."""
    received = {name: b"" for name in connections}
    order: list[str] = []
    with selectors.DefaultSelector() as selector:
        for name, sock in connections.items():
            selector.register(sock, selectors.EVENT_READ, name)
        while len(order) < len(connections):
            events = selector.select(timeout=120)
            assert events, f"no answer within 120 s; so far {order}"
            for key, _ in events:
                name = key.data
                chunk = key.fileobj.recv(65536)
                received[name] += chunk
                if answer_is_whole(received[name]) or not chunk:
                    order.append(name)
                    selector.unregister(key.fileobj)
    return order, received


def queued_bytes(sock: socket.socket) -> int | None:
    """Bytes of this connection that the server process has not read yet: those still in
    the client's send queue plus those in the server's receive queue (Linux only, else None)."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        return None
    ends = {sock.getsockname()[1]: "tx", sock.getpeername()[1]: "rx"}
    queued = 0
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        if {local, remote} == set(ends):
            tx_queue, rx_queue = (int(n, 16) for n in fields[4].split(":"))
            queued += tx_queue if ends[local] == "tx" else rx_queue
    return queued


def wait_until_read(sock: socket.socket) -> None:
    """Wait until the server has read everything sent on ``sock`` (two minutes at most)."""
    deadline = time.monotonic() + 120
    while queued_bytes(sock) and time.monotonic() < deadline:
        time.sleep(0.005)


def test_healthz_is_answered_while_a_large_add_is_checked(unchanged):
    parts = urlsplit(unchanged.base)
    address = (parts.hostname, parts.port)
    body = slow_bad_body()
    assert 30 << 20 < len(body) < 64 << 20  # large, yet under the default limit of 64 MiB
    add_head = (
        f"POST {parts.path}/hispec/add HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {unchanged.tokens['write']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    health_head = f"GET {parts.path}/healthz HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n"
    with (
        socket.create_connection(address, timeout=120) as add_sock,
        socket.create_connection(address, timeout=120) as health_sock,
    ):
        add_sock.sendall(add_head.encode() + body)
        wait_until_read(add_sock)  # the whole body is in the server: now it is checked
        health_sock.sendall(health_head.encode())
        order, answers = answers_in_order({"add": add_sock, "healthz": health_sock})

    assert order == ["healthz", "add"], answers
    assert answers["healthz"].startswith(b"HTTP/1.1 200"), answers["healthz"][:300]
    assert json.loads(answers["healthz"].partition(b"\r\n\r\n")[2])["status"] == "ok"
    assert answers["add"].startswith(b"HTTP/1.1 400"), answers["add"][:300]
    refusal = json.loads(answers["add"].partition(b"\r\n\r\n")[2])
    assert refusal["error"] == "bad_request"
    assert refusal["error_count"] == RECORDS
    assert "'zz'" in refusal["errors"][0]["reason"] and "NUL" in refusal["errors"][0]["reason"]

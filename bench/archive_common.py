"""Pieces shared by ``bench/archive.py`` and ``bench/archive_s3.py``: servers, tokens, load."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 32


def archive_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "koa_middleware.archive", *args]


def start_server(
    root: Path, db_url: str | None, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, str]:
    db = ["--db", db_url] if db_url else []
    process = subprocess.Popen(
        archive_command("serve", "--root", str(root), *db, "--port", "0", *extra),
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if not line.startswith("koa-archive listening on "):
        process.kill()
        sys.exit(f"the server did not start: {line!r}")
    threading.Thread(target=lambda: process.stdout.read(), daemon=True).start()
    return process, line.split(" on ", 1)[1].strip()


def make_token(root: Path, db_url: str | None) -> str:
    db = ["--db", db_url] if db_url else []
    result = subprocess.run(
        archive_command("token", "create", "--root", str(root), *db, "--scope", "write"),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def seed(client: httpx.Client, count: int) -> list[str]:
    """Add ``count`` records in batches of 1000; return their ids."""
    ids: list[str] = []
    started = time.perf_counter()
    for start in range(0, count, 1000):
        batch = []
        for index in range(start, min(start + 1000, count)):
            cal_id = str(uuid.uuid4())
            batch.append(
                {
                    "id": cal_id,
                    "filename": f"cal_{index:07d}.fits",
                    "cal_type": ("dark", "flat", "arc")[index % 3],
                    "datetime_obs": f"2024-01-{1 + index % 28:02d}T00:00:00.000",
                    "origin": "KECK",
                    "cal_version": "001",
                    "spectrograph": ("red", "blue")[index % 2],
                    "mjd_start": 60310.0 + index / 1000,
                    "file_md5": "0" * 32,
                    "file_size": 1000,
                }
            )
            ids.append(cal_id)
        client.post("hispec/add", json=batch, timeout=120).raise_for_status()
    elapsed = time.perf_counter() - started
    print(f"seeded {count} records via add (batches of 1000): {count / elapsed:,.0f} records/s")
    return ids


async def _keep_alive_client(host, port, path_for, token, deadline, latencies, errors):
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while time.perf_counter() < deadline:
            request = (
                f"GET {path_for()} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0])
    finally:
        writer.close()


def bench_query(
    base: str | list[str], token: str, ids: list[str], seconds: float
) -> dict[str, float]:
    """query?cal_id= at 32 concurrent keep-alive connections (a minimal raw HTTP/1.1 client).

    With several servers the connections are handed out round-robin. Prints the
    figures and returns them (``requests_per_second``, ``p50_ms``, ``p99_ms``).
    """
    urls = [httpx.URL(b) for b in ([base] if isinstance(base, str) else base)]
    url = urls[0]
    prefix = url.path.rstrip("/")
    latencies: list[float] = []
    errors: list[bytes] = []
    counter = iter(range(10**12))

    def path_for() -> str:
        return f"{prefix}/hispec/query?cal_id={ids[next(counter) % len(ids)]}"

    async def run() -> float:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _keep_alive_client(
                    urls[i % len(urls)].host,
                    urls[i % len(urls)].port,
                    path_for,
                    token,
                    deadline,
                    latencies,
                    errors,
                )
                for i in range(CLIENTS)
            )
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    servers = f" over {len(urls)} servers (round-robin)" if len(urls) > 1 else ""
    print(
        f"query?cal_id= with {CLIENTS} keep-alive clients{servers} for {elapsed:.1f} s: "
        f"{len(latencies) / elapsed:,.0f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        + (f", {len(errors)} non-200 answers" if errors else "")
    )
    return {"requests_per_second": len(latencies) / elapsed, "p50_ms": p50, "p99_ms": p99}


def write_random_file(path: Path, size: int) -> str:
    md5 = hashlib.md5()
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for index in range(size >> 20):
            # Vary each block cheaply so the file does not repeat one MiB.
            chunk = index.to_bytes(8, "little") + block[8:]
            handle.write(chunk)
            md5.update(chunk)
    return md5.hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed_shell(command: str) -> tuple[float, str]:
    started = time.perf_counter()
    output = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, check=True
    ).stdout
    return time.perf_counter() - started, output


def peak_rss(process: psutil.Process, stop: threading.Event, result: list[int]) -> None:
    peak = 0
    while not stop.is_set():
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    result.append(peak)

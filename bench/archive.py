"""Benchmark of the archive service (koa-archive), through real HTTP on loopback.

Run::

    python3 bench/archive.py                      # SQLite catalog
    python3 bench/archive.py --db postgresql://postgres@127.0.0.1:5432/test
    python3 bench/archive.py --records 20000 --size-mb 256   # a shorter run
    python3 bench/archive.py --db postgresql://postgres@127.0.0.1:5432/test \
        --storage s3://koa-bench/archive --s3-endpoint-url http://127.0.0.1:9000 --size 1G
    python3 bench/archive.py --db ... --storage s3://koa-bench/archive --start-moto --size 256M
    python3 bench/archive.py --sizes 100000,1000000   # the catalog at scale (SQLite)
    python3 bench/archive.py --sizes 100000,1000000 --db postgresql://postgres@127.0.0.1:5432/test

It starts ``koa-archive serve`` in a temporary folder and prints:

- requests per second and p50/p99 latency of ``query?cal_id=`` at 32 concurrent
  keep-alive clients;
- records per second read through ``changes`` (100,000 records by default);
- upload and download throughput of a 1 GiB file (the server checks the MD5 and
  fsyncs; the download is piped into an MD5), next to ``curl`` reading the same
  bytes from ``python -m http.server`` on loopback into an MD5, in the same run;
- the server's peak RSS during the upload;
- a hostile ``add``: a body of the largest allowed size (64 MiB) holding
  ``[0,0,...]``, refused (413: too many records), while another client asks
  ``/healthz`` every 10 ms: its p50/p99 latency, the server's peak RSS, the time to
  the refusal and the size of the answer; then a body declaring more than the limit;
- idle connections: a server started with ``nofile=1024`` (``setrlimit`` in the
  child) while 1,000 connections that sent half a request line are held open (each
  one the server closes is opened again a second later); meanwhile another process asks
  ``/healthz`` every 10 ms on a new connection each time, and an authenticated
  ``query?cal_id=`` every 0.5 s: p50/p99 of ``/healthz``, requests that failed or
  waited more than 5 s, queries served, and the server's log lines.
  ``--idle-only`` runs just this section (``--idle-connections N``, ``--nofile N``).

With ``--storage s3://BUCKET/PREFIX`` the files go to S3-compatible storage
(endpoint ``--s3-endpoint-url``, credentials from the standard AWS variables;
``--start-moto`` starts a moto server on loopback and creates the bucket) and
the run prints instead: upload and download of a ``--size`` file through the
archive next to ``curl`` against the store directly (presigned PUT and GET),
the download through a second server started with ``--redirect-downloads``
(``curl -L``), and the ``query?cal_id=`` rate of one server and of two servers
on the same catalog and bucket, connections handed out round-robin.

With ``--sizes N,M,...`` the run is the scale run of ``bench/archive_scale.py``
instead: a catalog filled to each size (on PostgreSQL each in a database of its
own, dropped afterwards), the per-request figures measured at each, printed side by
side with their ratio (target: none over 2x from the smallest size to the largest).

Targets: at least 0.7 of curl's rate both ways; peak RSS under 150 MB during the
upload; while the hostile add is refused, ``/healthz`` p99 under 100 ms and peak
RSS under 4x the body size; under 1,000 idle connections, ``/healthz`` p99 under
100 ms and every authenticated query served. The
large files live in a temporary folder that is deleted afterwards. The given
PostgreSQL database gets the archive's tables: use a scratch database.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
from archive_common import (
    archive_command,
    bench_query,
    free_port,
    make_token,
    peak_rss,
    seed,
    start_server,
    timed_shell,
    write_random_file,
)
from archive_s3 import bench_object_storage, parse_size, start_moto
from archive_scale import run_scale
from machine import warm_memory

logger = logging.getLogger(__name__)

#: Times the hostile add is sent.
ROUNDS = 5
#: Asks /healthz every 10 ms until its stdin closes, then prints the latencies (JSON).
HEALTH_POLLER = """
import json, select, sys, time
import httpx
latencies = []
with httpx.Client(base_url=sys.argv[1] + "/", timeout=60) as client:
    client.get("healthz").raise_for_status()
    print("ready", flush=True)
    while not select.select([sys.stdin], [], [], 0)[0]:
        started = time.perf_counter()
        client.get("healthz").raise_for_status()
        latencies.append(time.perf_counter() - started)
        time.sleep(0.01)
print(json.dumps(latencies))
"""


def bench_changes(client: httpx.Client, expected: int) -> None:
    for limit in (1000, 10000):
        since, seen = 0, 0
        started = time.perf_counter()
        while True:
            page = client.get(
                "hispec/changes", params={"since": since, "limit": limit}, timeout=120
            ).json()
            seen += len(page["records"])
            since = page["next"]
            if not page["more"]:
                break
        elapsed = time.perf_counter() - started
        assert seen == expected, (seen, expected)
        print(
            f"changes, pages of {limit}: {seen:,} records in {elapsed:.2f} s = "
            f"{seen / elapsed:,.0f} records/s"
        )


def bench_large_file(base: str, token: str, server: subprocess.Popen, size_mb: int) -> None:
    if not shutil.which("curl"):
        print("curl not found: 1 GiB comparison skipped")
        return
    size = size_mb << 20
    with tempfile.TemporaryDirectory(prefix="koa-bench-large-") as folder:
        path = Path(folder) / "large.bin"
        md5 = write_random_file(path, size)
        port = free_port()
        static = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "http.server",
                str(port),
                "--bind",
                "127.0.0.1",
                "--directory",
                folder,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    httpx.head(f"http://127.0.0.1:{port}/large.bin")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            # Warm the page cache so both sides read the file from memory, and the
            # memory the upload is written into (bench/machine.py).
            timed_shell(f"cat {path} > /dev/null")
            warm_memory(Path(folder) / "scratch", size)
            curl_time, output = timed_shell(f"curl -sf http://127.0.0.1:{port}/large.bin | md5sum")
            assert output.split()[0] == md5
            cal_id = str(uuid.uuid4())
            auth = f"Authorization: Bearer {token}"
            stop, peak = threading.Event(), []
            watcher = threading.Thread(
                target=peak_rss, args=(psutil.Process(server.pid), stop, peak)
            )
            watcher.start()
            up_time, output = timed_shell(
                f"curl -sf -T {path} -H '{auth}' -H 'X-File-MD5: {md5}' "
                f"-w '%{{http_code}}' {base}/hispec/files/{cal_id}"
            )
            stop.set()
            watcher.join()
            assert output.endswith("201"), output
            down_time, output = timed_shell(
                f"curl -sf -H '{auth}' {base}/hispec/files/{cal_id} | md5sum"
            )
            assert output.split()[0] == md5
        finally:
            static.terminate()
            static.wait()
    mib = size / (1 << 20)
    curl_rate, up_rate, down_rate = mib / curl_time, mib / up_time, mib / down_time
    print(f"{mib:.0f} MiB file, MD5 included:")
    print(f"  curl from python -m http.server: {curl_rate:,.0f} MiB/s")
    print(
        f"  archive upload (curl -T, server MD5 + fsync): {up_rate:,.0f} MiB/s "
        f"= {up_rate / curl_rate:.2f} of curl (target >= 0.7)"
    )
    print(
        f"  archive download (curl | md5sum): {down_rate:,.0f} MiB/s "
        f"= {down_rate / curl_rate:.2f} of curl (target >= 0.7)"
    )
    print(f"  server peak RSS during the upload: {peak[0] / 1e6:.0f} MB (target < 150 MB)")


def zeros_body(limit: int) -> tuple[bytes, str]:
    """``[0,0,...]`` filling ``limit`` bytes: refused once it passes the record limit."""
    count = (limit - 2) // 2
    return b"[" + b"0," * (count - 1) + b"0]", f"[0,0,...] ({count:,} elements)"


def wide_records_body(limit: int, records: int = 10_000) -> tuple[bytes, str]:
    """``records`` wide records filling up to ``limit`` bytes, each refused only by its
    last field (a NUL): the archive parses and checks the whole body before answering."""
    columns = {f"k{i:03d}": 1_000_000 + i for i in range(400)}
    one = {
        "id": str(uuid.uuid4()),
        "filename": "wide.fits",
        "cal_type": "dark",
        "datetime_obs": "2026-01-01T00:00:00.000",
        "origin": "KECK",
        "cal_version": "001",
        **columns,
        "zz": "a\u0000b",
    }
    size = len(json.dumps(one).encode()) + 1
    records = min(records, (limit - 2) // size)
    body = b"[" + b",".join(json.dumps(one).encode() for _ in range(records)) + b"]"
    return body, f"{records:,} records of {len(one)} fields, each with a NUL in the last"


def bench_hostile_add(root: Path, db_url: str | None, token: str) -> None:
    """Maximal adds refused while /healthz is polled from another process; peak RSS."""
    limit = 64 << 20
    server, base = start_server(root, db_url)
    try:
        process = psutil.Process(server.pid)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=base + "/", headers=headers, timeout=600) as client:
            client.get("healthz").raise_for_status()
            for body, what in (zeros_body(limit), wide_records_body(limit)):
                assert len(body) <= limit
                refuse_while_polled(client, process, base, body, what)
        url = httpx.URL(base)
        started = time.perf_counter()
        with socket.create_connection((url.host, url.port), timeout=60) as sock:
            sock.sendall(
                (
                    f"POST {url.path}/hispec/add HTTP/1.1\r\nHost: {url.host}\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Length: {limit + 1}\r\n\r\n"
                ).encode()
            )
            status_line = sock.recv(65536).split(b"\r\n", 1)[0].decode()
        print(
            f"  a body declaring {limit + 1} bytes, none sent: '{status_line}' after "
            f"{(time.perf_counter() - started) * 1000:.1f} ms"
        )
    finally:
        server.terminate()
        server.wait()


def refuse_while_polled(
    client: httpx.Client, process: psutil.Process, base: str, body: bytes, what: str
) -> None:
    """Send ``body`` to add ROUNDS times while another process polls /healthz; print it all."""
    idle_rss = process.memory_info().rss
    # /healthz is asked from another process, so this one's work does not delay it.
    poller = subprocess.Popen(
        [sys.executable, "-c", HEALTH_POLLER, base],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert poller.stdout.readline().strip() == "ready"
    stop, peak = threading.Event(), []
    watcher = threading.Thread(target=peak_rss, args=(process, stop, peak))
    watcher.start()
    answers, elapsed = [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        answers.append(client.post("hispec/add", content=body))
        elapsed.append(time.perf_counter() - started)
    stop.set()
    watcher.join()
    latencies = sorted(json.loads(poller.communicate(input="", timeout=60)[0]))
    response = answers[-1]
    assert all(answer.status_code in (400, 413) for answer in answers), response.text[:300]
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(f"hostile add: {len(body) / 2**20:.0f} MiB body of {what}, sent {ROUNDS} times:")
    print(
        f"  answered {response.status_code} after {min(elapsed):.2f}-{max(elapsed):.2f} s "
        f"with {len(response.content)} bytes: {response.json()['message'][:150]}"
    )
    print(
        f"  /healthz meanwhile ({len(latencies)} requests): p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms (target < 100 ms)"
    )
    print(
        f"  server RSS: {idle_rss / 1e6:.0f} MB before, peak {peak[0] / 1e6:.0f} MB = "
        f"{peak[0] / len(body):.2f}x the body (target < 4x)"
    )


# -- idle connections ----------------------------------------------------------------------
#: Asks /healthz every 10 ms on a new connection, and a query every 0.5 s, for argv[3] s;
#: prints the outcomes (JSON). A request that fails or takes over 5 s counts as failed.
IDLE_POLLER = """
import json, socket, sys, time
import httpx
base, token, seconds, cal_id = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
url = httpx.URL(base)
request = f"GET {url.path}/healthz HTTP/1.1\\r\\nHost: {url.host}\\r\\n"
request += "Connection: close\\r\\n\\r\\n"
def healthz():
    with socket.create_connection((url.host, url.port), timeout=5) as sock:
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.split(b" ", 2)[1].decode() if answer else "closed"
health, failed, queries, served = [], [], 0, 0
client = httpx.Client(
    base_url=base + "/", timeout=5, headers={"Authorization": "Bearer " + token},
    limits=httpx.Limits(max_keepalive_connections=0),
)
deadline = time.monotonic() + seconds
next_query = 0.0
while time.monotonic() < deadline:
    started = time.perf_counter()
    try:
        status = healthz()
    except OSError as exc:
        status = type(exc).__name__
    if status == "200":
        health.append(time.perf_counter() - started)
    else:
        failed.append(status)
    if time.monotonic() >= next_query:
        next_query = time.monotonic() + 0.5
        queries += 1
        try:
            answer = client.get("hispec/query", params={"cal_id": cal_id})
            served += answer.status_code == 200 and answer.json().get("id") == cal_id
        except httpx.HTTPError:
            pass
    time.sleep(0.01)
print(json.dumps({"health": health, "failed": failed, "queries": queries, "served": served}))
"""


class IdleHolder(threading.Thread):
    """Holds ``count`` connections that sent half a request line; each one the server
    closes is opened again a second later."""

    def __init__(self, host: str, port: int, count: int, line: bytes):
        super().__init__(daemon=True)
        self.address, self.count, self.line = (host, port), count, line
        self.stop = threading.Event()
        self.opened = self.reopened = self.failed = 0
        self._selector = selectors.DefaultSelector()
        self._due: collections.deque[float] = collections.deque()

    def _open(self) -> None:
        try:
            sock = socket.create_connection(self.address, timeout=5)
            sock.sendall(self.line)
        except OSError:
            self.failed += 1
            return
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ)
        self.opened += 1

    def run(self) -> None:
        for _ in range(self.count):
            self._open()
        while not self.stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if not data:  # closed by the server: open another one a second later
                    self._selector.unregister(key.fileobj)
                    key.fileobj.close()
                    self._due.append(time.monotonic() + 1)
            while self._due and self._due[0] <= time.monotonic():
                self._due.popleft()
                self.reopened += 1
                self._open()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()


def _limit_files(nofile: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return apply


def bench_idle_connections(
    root: Path, db_url: str | None, token: str, count: int, nofile: int, seconds: float = 20.0
) -> None:
    """/healthz and authenticated queries while ``count`` idle connections are held open."""
    # This process holds the idle connections: it needs more descriptors than the server.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 256 if hard == resource.RLIM_INFINITY else min(hard, count + 256)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    db = ["--db", db_url] if db_url else []
    log = tempfile.NamedTemporaryFile(prefix="koa-bench-idle-", suffix=".log")  # noqa: SIM115
    argv = archive_command("serve", "--root", str(root), *db, "--port", "0")
    print(f"idle connections: server under nofile={nofile}: {' '.join(argv[1:])}")
    server = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=_limit_files(nofile)
    )
    holder = None
    try:
        line = server.stdout.readline()
        if not line.startswith("koa-archive listening on "):
            sys.exit(f"the server did not start: {line!r}")
        base = line.split(" on ", 1)[1].strip()
        limits = server.stdout.readline().strip()
        if limits.startswith("koa-archive limits:"):
            print(f"  {limits}")
        threading.Thread(target=lambda: server.stdout.read(), daemon=True).start()
        with httpx.Client(base_url=base + "/", headers={"Authorization": f"Bearer {token}"}) as c:
            cal_id = c.get("hispec/query", params={"limit": 1}).json()[0]["id"]
        url = httpx.URL(base)
        holder = IdleHolder(url.host, url.port, count, f"GET {url.path}/heal".encode())
        holder.start()
        deadline = time.monotonic() + 60
        while holder.opened + holder.failed < count and time.monotonic() < deadline:
            time.sleep(0.05)
        process = psutil.Process(server.pid)
        print(
            f"  {holder.opened} of {count} idle connections open ({holder.failed} failed); "
            f"server descriptors: {process.num_fds()} of {nofile}"
        )
        poller = subprocess.run(
            [sys.executable, "-c", IDLE_POLLER, base, token, str(seconds), cal_id],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
        result = json.loads(poller.stdout)
        fds = process.num_fds()
    finally:
        if holder is not None:
            holder.stop.set()
            holder.join(30)
        server.terminate()
        server.wait()
    latencies = sorted(result["health"])
    asked = len(latencies) + len(result["failed"])
    if latencies:
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        figures = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (target < 100 ms)"
    else:
        figures = "never answered"
    failures = sorted(set(result["failed"]))
    print(
        f"  /healthz over {seconds:g} s, a new connection each ({asked} requests): {figures}; "
        f"{len(result['failed'])} failed or over 5 s"
        + (f" ({', '.join(failures)})" if failures else "")
    )
    print(
        f"  authenticated query?cal_id=: {result['served']} of {result['queries']} served; "
        f"idle connections closed by the server and opened again: {holder.reopened}; "
        f"server descriptors at the end: {fds}"
    )
    text = Path(log.name).read_text(errors="replace")
    lines = text.splitlines()
    too_many = sum("Too many open files" in line for line in lines)
    print(
        f"  server log: {len(lines)} lines ({len(text.encode()):,} bytes), "
        f"{too_many} saying 'Too many open files'"
    )
    for line in lines[:3]:
        print(f"    {line[:160]}")
    log.close()


# -- object storage ----------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=None, help="catalog URL (default SQLite in a temp dir)")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--size-mb", type=int, default=None, help="file size in MiB")
    parser.add_argument(
        "--size", type=parse_size, default=1 << 30, help="file size: 256M, 1G, ... (default 1G)"
    )
    parser.add_argument("--storage", default=None, metavar="s3://BUCKET/PREFIX")
    parser.add_argument("--s3-endpoint-url", default=None, metavar="URL")
    parser.add_argument(
        "--start-moto", action="store_true", help="start a moto server for --storage"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--hostile-only", action="store_true", help="run only the hostile add section"
    )
    parser.add_argument(
        "--idle-only", action="store_true", help="run only the idle connections section"
    )
    parser.add_argument("--idle-connections", type=int, default=1000, metavar="N")
    parser.add_argument("--nofile", type=int, default=1024, help="the server's file limit")
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=None,
        metavar="N,M,...",
        help="run only the scale run: the catalog filled to each size (e.g. 100000,1000000)",
    )
    args = parser.parse_args()
    if args.size_mb is not None:
        args.size = args.size_mb << 20
    command = "python3 bench/archive.py " + " ".join(sys.argv[1:])
    print(f"command: {command.strip()}")
    print(
        f"machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM; "
        f"catalog: {'PostgreSQL' if args.db else 'SQLite'}; files: {args.storage or 'folder'}"
    )
    if args.sizes:
        run_scale(args.db, args.sizes, min(args.seconds, 3.0))
        print(f"command: {command.strip()}")
        return
    if args.storage:
        moto = None
        if args.start_moto:
            moto, args.s3_endpoint_url = start_moto(args.storage)
            print(f"store: moto server at {args.s3_endpoint_url} (objects in its memory)")
        storage_args = ("--storage", args.storage)
        if args.s3_endpoint_url:
            storage_args += ("--s3-endpoint-url", args.s3_endpoint_url)
        try:
            with tempfile.TemporaryDirectory(prefix="koa-bench-archive-") as folder:
                root = Path(folder) / "archive"
                bench_object_storage(
                    args,
                    root,
                    make_token(root, args.db),
                    storage_args,
                    moto.pid if moto else None,
                )
        finally:
            if moto is not None:
                moto.terminate()
                moto.wait()
        return
    with tempfile.TemporaryDirectory(prefix="koa-bench-archive-") as folder:
        root = Path(folder) / "archive"
        token = make_token(root, args.db)
        if args.hostile_only:
            bench_hostile_add(root, args.db, token)
            return
        if args.idle_only:
            server, base = start_server(root, args.db)
            try:
                with httpx.Client(
                    base_url=base + "/", headers={"Authorization": f"Bearer {token}"}
                ) as client:
                    seed(client, 1000)
            finally:
                server.terminate()
                server.wait()
            bench_idle_connections(root, args.db, token, args.idle_connections, args.nofile)
            return
        server, base = start_server(root, args.db)
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base + "/", headers=headers) as client:
                ids = seed(client, args.records)
                bench_query(base, token, ids, args.seconds)
                bench_changes(client, args.records)
            if args.size:
                bench_large_file(base, token, server, args.size >> 20)
        finally:
            server.terminate()
            server.wait()
        bench_hostile_add(root, args.db, token)
        bench_idle_connections(root, args.db, token, args.idle_connections, args.nofile)


if __name__ == "__main__":
    main()

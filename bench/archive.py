"""Benchmark of the archive service (koa-archive), through real HTTP on loopback.

Run::

    python3 bench/archive.py                      # SQLite catalog
    python3 bench/archive.py --db postgresql://postgres@127.0.0.1:5432/test
    python3 bench/archive.py --records 20000 --size-mb 256   # a shorter run
    python3 bench/archive.py --db postgresql://postgres@127.0.0.1:5432/test \
        --storage s3://koa-bench/archive --s3-endpoint-url http://127.0.0.1:9000 --size 1G
    python3 bench/archive.py --db ... --storage s3://koa-bench/archive --start-moto --size 256M

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
  the refusal and the size of the answer; then a body declaring more than the limit.

With ``--storage s3://BUCKET/PREFIX`` the files go to S3-compatible storage
(endpoint ``--s3-endpoint-url``, credentials from the standard AWS variables;
``--start-moto`` starts a moto server on loopback and creates the bucket) and
the run prints instead: upload and download of a ``--size`` file through the
archive next to ``curl`` against the store directly (presigned PUT and GET),
the download through a second server started with ``--redirect-downloads``
(``curl -L``), and the ``query?cal_id=`` rate of one server and of two servers
on the same catalog and bucket, connections handed out round-robin.

Targets: at least 0.7 of curl's rate both ways; peak RSS under 150 MB during the
upload; while the hostile add is refused, ``/healthz`` p99 under 100 ms and peak
RSS under 4x the body size. The
large files live in a temporary folder that is deleted afterwards. The given
PostgreSQL database gets the archive's tables: use a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
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
from machine import warm_memory

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 32
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


def bench_query(base: str | list[str], token: str, ids: list[str], seconds: float) -> None:
    """query?cal_id= at 32 concurrent keep-alive connections (a minimal raw HTTP/1.1 client).

    With several servers the connections are handed out round-robin.
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


def bench_hostile_add(root: Path, db_url: str | None, token: str) -> None:
    """A maximal add of ``[0,0,...]`` refused while /healthz is polled; peak RSS."""
    limit = 64 << 20
    server, base = start_server(root, db_url)
    try:
        process = psutil.Process(server.pid)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        count = (limit - 2) // 2
        body = b"[" + b"0," * (count - 1) + b"0]"
        assert len(body) <= limit
        with httpx.Client(base_url=base + "/", headers=headers, timeout=600) as client:
            client.get("healthz").raise_for_status()
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
            latencies = json.loads(poller.communicate(input="", timeout=60)[0])
            response = answers[-1]
            assert all(answer.status_code == 413 for answer in answers), response.text[:300]
            latencies.sort()
            p50 = latencies[len(latencies) // 2] * 1000
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
            print(
                f"hostile add: {len(body) / 2**20:.0f} MiB body of [0,0,...] "
                f"({count:,} elements), sent {ROUNDS} times:"
            )
            print(
                f"  answered {response.status_code} after {min(elapsed):.2f}-{max(elapsed):.2f} s "
                f"with {len(response.content)} bytes: {response.json()['message']}"
            )
            print(
                f"  /healthz meanwhile ({len(latencies)} requests): p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms (target < 100 ms)"
            )
            print(
                f"  server RSS: {idle_rss / 1e6:.0f} MB idle, peak {peak[0] / 1e6:.0f} MB = "
                f"{peak[0] / len(body):.2f}x the body (target < 4x)"
            )
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


# -- object storage ----------------------------------------------------------------------
def parse_size(text: str) -> int:
    """``256M``, ``1G``, ``1GiB`` or a number of bytes."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def start_moto(storage: str) -> tuple[subprocess.Popen, str]:
    """A moto server on loopback (its own process) with the bucket of ``storage``."""
    import boto3

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "koa-bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "koa-bench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(endpoint)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=storage[5:].split("/")[0])
    return process, endpoint


def presigned(endpoint: str | None, storage: str, key: str, method: str) -> str:
    import boto3
    from botocore.config import Config

    bucket, _, prefix = storage[5:].partition("/")
    client = boto3.client(
        "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"})
    )
    full_key = f"{prefix.strip('/')}/{key}" if prefix.strip("/") else key
    return client.generate_presigned_url(
        method, Params={"Bucket": bucket, "Key": full_key}, ExpiresIn=3600
    )


def cpu_seconds(*pids: int | None) -> list[float]:
    """User + system CPU seconds used so far by each process (0 for None)."""
    times = [psutil.Process(pid).cpu_times() if pid else None for pid in pids]
    return [t.user + t.system if t else 0.0 for t in times]


def bench_object_storage(
    args, root: Path, token: str, storage_args: tuple[str, ...], store_pid: int | None
) -> None:
    """Large-file transfers through the archive vs curl on the store; query rate, 1 and 2."""
    size = args.size
    mib = size / (1 << 20)
    auth = f"Authorization: Bearer {token}"
    first, base = start_server(root, args.db, storage_args)
    servers = [first]
    try:
        with httpx.Client(base_url=base + "/", headers={"Authorization": f"Bearer {token}"}) as c:
            ids = seed(c, args.records)
        with tempfile.TemporaryDirectory(prefix="koa-bench-large-") as folder:
            path = Path(folder) / "large.bin"
            md5 = write_random_file(path, size)
            timed_shell(f"cat {path} > /dev/null")
            # The store alone: curl PUT and GET through presigned URLs.
            direct_key = f"bench/{uuid.uuid4()}"
            put_url = presigned(args.s3_endpoint_url, args.storage, direct_key, "put_object")
            get_url = presigned(args.s3_endpoint_url, args.storage, direct_key, "get_object")
            direct_up, _ = timed_shell(f"curl -sf -T {path} '{put_url}'")
            direct_down, output = timed_shell(f"curl -sf '{get_url}' | md5sum")
            assert output.split()[0] == md5
            cal_id = str(uuid.uuid4())
            stop, peak = threading.Event(), []
            watcher = threading.Thread(
                target=peak_rss, args=(psutil.Process(first.pid), stop, peak)
            )
            watcher.start()
            busy = cpu_seconds(first.pid, store_pid)
            up_time, output = timed_shell(
                f"curl -sf -T {path} -H '{auth}' -H 'X-File-MD5: {md5}' "
                f"-w '%{{http_code}}' {base}/hispec/files/{cal_id}"
            )
            busy = [
                after - before
                for before, after in zip(busy, cpu_seconds(first.pid, store_pid), strict=True)
            ]
            stop.set()
            watcher.join()
            assert output.endswith("201"), output
            down_time, output = timed_shell(
                f"curl -sf -H '{auth}' {base}/hispec/files/{cal_id} | md5sum"
            )
            assert output.split()[0] == md5
            redirecting, redirect_base = start_server(
                root, args.db, (*storage_args, "--redirect-downloads")
            )
            servers.append(redirecting)
            # curl -L does not send the token on to the store (another host).
            redirect_time, output = timed_shell(
                f"curl -sfL -H '{auth}' {redirect_base}/hispec/files/{cal_id} | md5sum"
            )
            assert output.split()[0] == md5
        print(f"{mib:.0f} MiB file on {args.storage}, MD5 included:")
        print(f"  curl PUT to the store (presigned): {mib / direct_up:,.0f} MiB/s")
        print(
            f"  archive upload (curl -T; MD5, multipart upload): {mib / up_time:,.0f} MiB/s "
            f"= {direct_up / up_time:.2f} of curl to the store"
        )
        print(f"  curl GET from the store (presigned) | md5sum: {mib / direct_down:,.0f} MiB/s")
        print(
            f"  archive download, streamed (curl | md5sum): {mib / down_time:,.0f} MiB/s "
            f"= {direct_down / down_time:.2f} of curl from the store"
        )
        print(
            f"  archive download, --redirect-downloads (curl -L | md5sum): "
            f"{mib / redirect_time:,.0f} MiB/s = {direct_down / redirect_time:.2f} of curl"
        )
        print(f"  server peak RSS during the upload: {peak[0] / 1e6:.0f} MB")
        print(
            f"  CPU seconds during the upload: archive {busy[0]:.1f}"
            + (f", store {busy[1]:.1f}" if store_pid else "")
        )
        bench_query(base, token, ids, args.seconds)
        bench_query([base, redirect_base], token, ids, args.seconds)
    finally:
        for server in servers:
            server.terminate()
            server.wait()


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
    args = parser.parse_args()
    if args.size_mb is not None:
        args.size = args.size_mb << 20
    command = "python3 bench/archive.py " + " ".join(sys.argv[1:])
    print(f"command: {command.strip()}")
    print(
        f"machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM; "
        f"catalog: {'PostgreSQL' if args.db else 'SQLite'}; files: {args.storage or 'folder'}"
    )
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


if __name__ == "__main__":
    main()

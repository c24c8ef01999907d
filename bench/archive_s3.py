"""The object-storage part of ``bench/archive.py`` (``--storage s3://...``).

Run it through ``python3 bench/archive.py --storage s3://BUCKET/PREFIX ...``; see
that script's docstring for what is printed and the targets.
"""

from __future__ import annotations

import logging
import os
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
    bench_query,
    free_port,
    peak_rss,
    seed,
    start_server,
    timed_shell,
    write_random_file,
)

logger = logging.getLogger(__name__)


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

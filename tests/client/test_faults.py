"""Faults during downloads, against a real koa-archive behind a throttling relay.

The relay (tests/support/relay.py) forwards every byte between client and
server, slowed down so that the test can act while a download is under way,
and notes every request so that downloads and ``Range`` headers can be counted.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from koa_middleware.cache.layout import CacheLayout
from koa_middleware.client.downloads import fetch_to_cache
from support.archive import ArchiveServer, create_token, make_client
from support.children import NO_FILE, ready_file, start_child, stop_children, wait_until_ready
from support.published import publish
from support.relay import Relay

INSTRUMENT = "hispec"


@pytest.fixture
def archive(tmp_path, protocol):
    """A private archive (it is killed and restarted) holding one 16 MB calibration."""
    root = tmp_path / "archive"
    token = create_token(root, "write")
    with ArchiveServer(root, protocol=protocol) as server:
        v2 = ArchiveServer(root, protocol=2) if protocol == 1 else None
        publisher_url = server.base_url if v2 is None else v2.start().base_url
        with make_client(publisher_url, INSTRUMENT, token) as publisher:
            (record,) = publish(publisher, tmp_path / "files", 1, size=16_000_000)
        if v2 is not None:
            v2.__exit__(None, None, None)
        yield server, token, record


def download_path(remote_protocol: int) -> str:
    return "/files/" if remote_protocol == 2 else "/download?cal_id="


def wait_for_partial(layout: CacheLayout, cal_id: str, at_least: int, timeout: float = 30) -> int:
    """Wait until a download of ``cal_id`` has written ``at_least`` bytes; return the size."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in (f"{cal_id}.download", f"{cal_id}.download.zip"):
            try:
                size = (layout.tmp_dir / name).stat().st_size
            except FileNotFoundError:
                continue
            if size >= at_least:
                return size
        time.sleep(0.005)
    raise AssertionError(f"no partial download of {at_least} bytes appeared")


def assert_verified(path: Path, record: dict) -> None:
    assert path.is_file()
    assert path.stat().st_size == record["file_size"]
    assert hashlib.md5(path.read_bytes()).hexdigest() == record["file_md5"]


def test_archive_down_mid_download_then_back(archive, protocol, tmp_path):
    server, token, record = archive
    layout = CacheLayout(tmp_path / "cache", INSTRUMENT)
    layout.create()
    with Relay(server.port, rate=10e6) as relay:
        url = relay.rewrite(server.base_url)
        with make_client(url, INSTRUMENT, token, retries=8, backoff=0.2) as remote:
            assert remote.protocol == protocol
            result: dict = {}

            def download() -> None:
                try:
                    result["path"] = fetch_to_cache(remote, record, layout)
                except BaseException as exc:  # reported below
                    result["error"] = exc

            worker = threading.Thread(target=download)
            worker.start()
            wait_for_partial(layout, record["id"], 2_000_000)
            server.kill()  # the archive goes down mid-download ...
            time.sleep(0.3)  # ... stays down a while, so that the client retries ...
            server.start()  # ... and comes back on the same port
            worker.join(120)
        assert "error" not in result, result.get("error")
        assert_verified(result["path"], record)
        assert not any(layout.tmp_dir.iterdir())
        downloads = [h for h in relay.heads if download_path(protocol) in h.split("\r\n")[0]]
        assert len(downloads) >= 2
        if protocol == 2:
            resumed = [h for h in downloads if "range: bytes=" in h.lower()]
            assert resumed, downloads
            offset = int(resumed[0].lower().split("range: bytes=")[1].split("-")[0])
            assert 2_000_000 <= offset < record["file_size"]


def run_client(
    tmp_path: Path,
    url: str,
    token: str,
    cal_id: str,
    entry: str = "fetch",
    go: Path | str = NO_FILE,
    ready: Path | str = NO_FILE,
) -> subprocess.Popen:
    """A process downloading ``cal_id`` into ``tmp_path/cache`` through ``entry``.

    Given ``ready``, it creates that file once the archive has answered, then
    waits for ``go`` before it downloads; it prints the path of the file.
    """
    return start_child(
        "fetch_calibration",
        url,
        token,
        tmp_path / "cache",
        cal_id,
        entry,
        go,
        ready,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_client_killed_mid_download(archive, protocol, tmp_path):
    server, token, record = archive
    layout = CacheLayout(tmp_path / "cache", INSTRUMENT)
    with Relay(server.port, rate=8e6) as relay:
        url = relay.rewrite(server.base_url)
        process = run_client(tmp_path, url, token, record["id"])
        try:
            wait_for_partial(layout, record["id"], 1_000_000)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        destination = layout.path_for(record["filename"])
        assert not destination.exists()
        assert list(layout.calibrations_dir.iterdir()) == []
        relay.rate = None
        with make_client(url, INSTRUMENT, token) as remote:
            assert_verified(fetch_to_cache(remote, record, layout), record)
        assert not any(layout.tmp_dir.iterdir())
        if protocol == 2:
            assert sum("range: bytes=" in head.lower() for head in relay.heads) == 1


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["fetch", "store"], ids=["fetch_to_cache", "get_calibration"])
def test_four_processes_one_download(archive, protocol, tmp_path, entry):
    server, token, record = archive
    layout = CacheLayout(tmp_path / "cache", INSTRUMENT)
    go = tmp_path / "go"
    with Relay(server.port, rate=16e6) as relay:
        url = relay.rewrite(server.base_url)
        ready = tmp_path / "ready"
        ready.mkdir()
        processes = [
            run_client(tmp_path, url, token, record["id"], entry, go, ready_file(ready, n))
            for n in range(4)
        ]
        wait_until_ready(ready, processes)  # every client has asked the archive: now they race
        go.touch()
        try:
            outputs = [process.communicate(timeout=120) for process in processes]
        finally:
            stop_children(processes)
        for process, (out, err) in zip(processes, outputs, strict=True):
            assert process.returncode == 0, err
            assert out.strip() == str(layout.path_for(record["filename"]))
        assert relay.count(download_path(protocol) + record["id"]) == 1
    assert_verified(layout.path_for(record["filename"]), record)
    assert list(layout.calibrations_dir.iterdir()) == [layout.path_for(record["filename"])]
    assert not [p for p in layout.tmp_dir.iterdir() if p.suffix != ".pending"]

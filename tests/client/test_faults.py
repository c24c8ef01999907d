"""Faults during downloads, against a real koa-archive behind a throttling relay.

The relay (tests/support/relay.py) forwards every byte between client and
server, slowed down so that the test can act while a download is under way,
and notes every request so that downloads and ``Range`` headers can be counted.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from koa_middleware.cache.layout import CacheLayout
from koa_middleware.client.downloads import fetch_to_cache
from support.archive import ArchiveServer, create_token, make_client
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
            time.sleep(0.3)
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


CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path
    from koa_middleware.cache.layout import CacheLayout
    from koa_middleware.client.remote_database import RemoteCalibrationDB
    from koa_middleware.client.downloads import fetch_to_cache

    url, token, cache, cal_id, go, entry = sys.argv[1:7]
    if entry == "store":
        # The whole store: record lookup on the archive, local add, then the download.
        import os
        from koa_middleware.store import CalibrationStore

        os.environ.update(KOA_CALIBRATIONS_URL=url, KOA_API_TOKEN=token)
        store = CalibrationStore(instrument_name="hispec", cache_dir=cache, sync_on_init=False)
        while go != "-" and not Path(go).exists():
            time.sleep(0.01)
        path, record = store.get_calibration(cal_id)
        assert record["id"] == cal_id
        store.close()
    else:
        with RemoteCalibrationDB("hispec", url=url, token=token, backoff=0.1) as remote:
            record = remote.query(cal_id=cal_id)
            remote.protocol
            while go != "-" and not Path(go).exists():
                time.sleep(0.01)
            path = fetch_to_cache(remote, record, CacheLayout(cache, "hispec"))
    print(path)
    """
)


def run_client(
    tmp_path: Path, url: str, token: str, cal_id: str, go: str = "-", entry: str = "fetch"
) -> subprocess.Popen:
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    cache = str(tmp_path / "cache")
    argv = [sys.executable, str(script), url, token, cache, cal_id, go, entry]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
        processes = [
            run_client(tmp_path, url, token, record["id"], str(go), entry) for _ in range(4)
        ]
        time.sleep(1.0)  # let them all start up before they race
        go.touch()
        outputs = [process.communicate(timeout=120) for process in processes]
        for process, (out, err) in zip(processes, outputs, strict=True):
            assert process.returncode == 0, err
            assert out.strip() == str(layout.path_for(record["filename"]))
        assert relay.count(download_path(protocol) + record["id"]) == 1
    assert_verified(layout.path_for(record["filename"]), record)
    assert list(layout.calibrations_dir.iterdir()) == [layout.path_for(record["filename"])]
    assert not [p for p in layout.tmp_dir.iterdir() if p.suffix != ".pending"]

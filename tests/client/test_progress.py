"""Progress bars: shown on a terminal (a real pseudo-terminal here), silent otherwise."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import sys
import termios

import pytest

from koa_middleware.cache.layout import CacheLayout
from koa_middleware.client.downloads import fetch_to_cache, progress_enabled
from koa_middleware.client.remote_database import RemoteCalibrationDB
from support.scripted_http import ScriptedHTTPServer, file_answer, json_answer

CAL_ID = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"
DATA = os.urandom(3 << 20)


@pytest.fixture
def terminal():
    """The writing end of a pseudo-terminal, as a text stream, and a reader of what it shows."""
    leader, follower = pty.openpty()
    # A terminal of 24 rows and 80 columns, as a user's would be.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    stream = os.fdopen(follower, "w", buffering=1)

    def shown() -> str:
        chunks = []
        while select.select([leader], [], [], 0.2)[0]:
            chunks.append(os.read(leader, 65536))
        return b"".join(chunks).decode(errors="replace")

    yield stream, shown
    stream.close()
    os.close(leader)


def test_progress_decision(terminal, monkeypatch):
    stream, _ = terminal
    assert progress_enabled(None, stream) is True
    assert progress_enabled(True, stream) is True
    assert progress_enabled(False, stream) is False
    assert progress_enabled(True, io.StringIO()) is False
    for off in ("0", "false", "no", "off"):
        monkeypatch.setenv("KOA_PROGRESS", off)
        assert progress_enabled(True, stream) is False


def download(tmp_path):
    record = {
        "id": CAL_ID,
        "filename": "big.fits",
        "cal_type": "dark",
        "datetime_obs": "2026-01-01T00:00:00.000",
        "file_size": len(DATA),
    }
    with ScriptedHTTPServer() as server:
        server.route("GET", "/api/healthz", json_answer({"status": "ok", "protocol": 2}))
        server.route("GET", f"/api/hispec/files/{CAL_ID}", file_answer(DATA))
        with RemoteCalibrationDB("hispec", url=server.url + "/api", token="t") as remote:
            layout = CacheLayout(tmp_path / "cache", "hispec")
            return fetch_to_cache(remote, record, layout, progress=True)


def test_bar_on_a_terminal_only(terminal, tmp_path, monkeypatch, capfd):
    stream, shown = terminal
    monkeypatch.setattr(sys, "stderr", stream)
    assert download(tmp_path / "a").read_bytes() == DATA
    assert "big.fits" in shown()

    monkeypatch.setenv("KOA_PROGRESS", "0")
    download(tmp_path / "b")
    assert "big.fits" not in shown()

    monkeypatch.delenv("KOA_PROGRESS")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    download(tmp_path / "c")
    assert sys.stderr.getvalue() == ""
    assert "big.fits" not in capfd.readouterr().err

"""One progress bar counting bytes for a download of many files (``koa-cal sync --files``,
``koa-cal get`` of several items), on a (pseudo-)terminal only."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading

import fastapi  # noqa: F401  (a dependency: missing, it must fail, not skip)
import pytest

from support.cli_archive import PublishedArchive, cached_files
from support.koa_cal import cli_env

COUNT = 12
SIZE = 64 * 1024


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    with PublishedArchive(tmp_path_factory.mktemp("archive"), COUNT, SIZE) as archive:
        yield archive


def on_a_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run ``koa-cal ARGS`` with stderr on a pseudo-terminal; return its status and screen."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "koa_middleware.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=120)
        reader.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


def test_one_bar_counting_bytes_and_none_per_file(tmp_path, archive):
    env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=archive.url, KOA_API_TOKEN=archive.read_token)
    del env["KOA_PROGRESS"]
    code, screen = on_a_terminal(env, "sync", "--files")
    assert code == 0, screen
    assert len(cached_files(tmp_path / "cache")) == COUNT
    assert "files:" in screen
    assert "/768k" in screen and "B/s" in screen  # its total: 12 files of 64 KiB, in bytes
    assert not any(record["filename"] in screen for record in archive.records)


def test_no_bar_with_koa_progress_0(tmp_path, archive):
    env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=archive.url, KOA_API_TOKEN=archive.read_token)
    code, screen = on_a_terminal(env, "sync", "--files")  # cli_env sets KOA_PROGRESS=0
    assert code == 0, screen
    assert len(cached_files(tmp_path / "cache")) == COUNT
    assert "files:" not in screen and "%|" not in screen


def test_get_of_several_items_shows_one_bar(tmp_path, archive):
    env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=archive.url, KOA_API_TOKEN=archive.read_token)
    del env["KOA_PROGRESS"]
    wanted = archive.records[:4]
    code, screen = on_a_terminal(env, "sync")
    assert code == 0, screen
    code, screen = on_a_terminal(env, "get", *(r["filename"] for r in wanted))
    assert code == 0, screen
    assert cached_files(tmp_path / "cache") == {r["filename"] for r in wanted}
    assert "files:" in screen and "/256k" in screen  # 4 files of 64 KiB
    assert not any(record["filename"] in screen for record in wanted)

"""How downloads move bytes: large network reads, gathered disk writes, byte-exact files."""

from __future__ import annotations

import hashlib
import os

import pytest

from koa_middleware.client import http_transport
from koa_middleware.client.incoming import IncomingFile, write_all
from koa_middleware.errors import RemoteUnavailableError
from support.archive import make_client
from support.koa_cal import closed_port_url
from support.published import publish

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.mark.parametrize("megabytes", [1, 12])
def test_only_large_answers_are_read_in_large_pieces(
    remote, publisher, tmp_path, monkeypatch, megabytes
):
    (record,) = publish(publisher, tmp_path / "files", 1, size=megabytes << 20)
    asked: list[int] = []  # what each read asked of the socket, and what came back
    received: list[int] = []

    class NotingStream:
        def __init__(self, stream):
            self.stream = stream

        def read(self, max_bytes, timeout=None):
            data = self.stream.read(max_bytes, timeout)
            asked.append(max_bytes)
            received.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.stream, name)

    original_init = http_transport._LargeReadStream.__init__

    def noting_init(self, stream):
        original_init(self, NotingStream(stream))

    monkeypatch.setattr(http_transport._LargeReadStream, "__init__", noting_init)
    path = remote.download_calibration_file(record["id"], str(tmp_path / "out"))
    assert hashlib.md5(open(path, "rb").read()).hexdigest() == record["file_md5"]
    assert sum(received) >= record["file_size"]
    # httpcore alone never asks for more than 64 KiB at a time.
    small_read = 64 << 10
    if megabytes == 1:
        # A few MiB are cheaper to read in small pieces.
        assert max(asked) <= small_read
    else:
        assert max(asked) == http_transport.READ_BYTES > small_read
        # Reads grow only once the answer has proved large.
        first_large = asked.index(http_transport.READ_BYTES)
        assert sum(received[:first_large]) >= http_transport.LARGE_AFTER_BYTES > 1 << 20


@pytest.mark.parametrize("no_proxy", [None, "127.0.0.1"])
def test_proxy_settings_of_the_environment_are_honoured(
    shared_archive, instrument, monkeypatch, no_proxy
):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    # The proxy is a port nothing listens on: a client that uses it cannot get through.
    monkeypatch.setenv("HTTP_PROXY", closed_port_url().split("/api")[0])
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)
    token = shared_archive.tokens["read"]
    with make_client(shared_archive.url(2), instrument, token, retries=0) as remote:
        if no_proxy:
            assert remote.get_last_updated() is None  # straight to the archive
        else:
            with pytest.raises(RemoteUnavailableError):
                remote.get_last_updated()


def test_tiny_chunks_are_gathered_and_written_exactly(tmp_path):
    chunks = [os.urandom(n) for n in [1, 0, 7, 65_536, 3] * 60 + [1 << 20, 5]]
    incoming = IncomingFile(tmp_path / "x.download", sum(map(len, chunks)))
    incoming.open(resume=False)
    for chunk in chunks:
        incoming.write(chunk)
    incoming.close(sync=True)
    data = b"".join(chunks)
    assert (tmp_path / "x.download").read_bytes() == data
    assert incoming.size == len(data)
    assert incoming.hexdigest() == hashlib.md5(data).hexdigest()


def test_large_download_hashed_in_background_matches(tmp_path):
    # Past the threaded-hashing size: blocks go to the MD5 thread as lists of chunks.
    block = os.urandom(1 << 20)
    chunks = [block[i : i + 100_000] for i in range(0, len(block), 100_000)] * 17
    incoming = IncomingFile(tmp_path / "big.download", sum(map(len, chunks)))
    incoming.open(resume=False)
    for chunk in chunks:
        incoming.write(chunk)
    incoming.close()
    data = b"".join(chunks)
    assert incoming.hexdigest() == hashlib.md5(data).hexdigest()
    assert (tmp_path / "big.download").stat().st_size == len(data)


def test_close_keeps_gathered_bytes_for_resuming(tmp_path):
    partial = tmp_path / "r.download"
    first = IncomingFile(partial, 300)
    first.open(resume=False)
    first.write(b"a" * 100)
    first.close()  # an interrupted download: what arrived is on disk
    assert partial.read_bytes() == b"a" * 100
    again = IncomingFile(partial, 300)
    again.open(resume=True)
    assert again.size == 100 and again.resumed
    again.write(b"b" * 200)
    again.close()
    assert again.hexdigest() == hashlib.md5(b"a" * 100 + b"b" * 200).hexdigest()


@pytest.mark.parametrize("sizes", [[], [0], [5, 0, 3], [70_000] * 20])
def test_write_all_writes_every_byte_in_order(tmp_path, sizes):
    chunks = [os.urandom(n) for n in sizes]
    fd = os.open(tmp_path / "w", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        write_all(fd, chunks)
    finally:
        os.close(fd)
    assert (tmp_path / "w").read_bytes() == b"".join(chunks)


def test_discard_leaves_nothing(tmp_path):
    incoming = IncomingFile(tmp_path / "d.download", 100)
    incoming.open(resume=False)
    incoming.write(b"x" * 10)  # gathered, not yet written
    incoming.discard()
    assert list(tmp_path.iterdir()) == []

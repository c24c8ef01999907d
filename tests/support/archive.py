"""Run a real ``koa-archive`` server (and its token command) in a subprocess for tests.

Examples
--------
>>> from support.archive import ArchiveServer, create_token
>>> with ArchiveServer(tmp_path / "archive") as server:  # doctest: +SKIP
...     token = create_token(server.root, "write")
...     httpx.get(server.base_url + "/healthz")
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger(__name__)

__all__ = [
    "ArchiveServer",
    "create_token",
    "archive_command",
    "make_record",
    "md5_hex",
    "upload",
    "publish",
    "make_client",
    "ArchivePair",
    "KOA_ENVIRONMENT",
]

READY_PREFIX = "koa-archive listening on "
START_TIMEOUT = 60.0


def archive_command(*args: str) -> list[str]:
    """Return the argv that runs ``python -m koa_middleware.archive ARGS``."""
    return [sys.executable, "-m", "koa_middleware.archive", *args]


def _db_args(db_url: str | None) -> list[str]:
    return ["--db", db_url] if db_url else []


class ArchiveServer:
    """A ``koa-archive serve`` subprocess on 127.0.0.1, started and stopped by a test.

    Parameters
    ----------
    root : Path
        The archive folder (``--root``); created if missing.
    db_url : str | None
        Catalog URL (``--db``); None means SQLite at ``root/archive.db``.
    protocol : int
        2 (default) or 1 (only the v1 routes).
    anonymous_read : bool
        Allow reading without a token.
    instruments : tuple of str
        The instruments served.
    extra_args : tuple of str
        More ``serve`` options, e.g. ``("--max-upload-bytes", "1000")``.

    Attributes
    ----------
    base_url : str
        ``http://127.0.0.1:PORT/api/calibrations``.
    process : subprocess.Popen
        The server process.
    port : int
        The port; kept across :meth:`restart`.
    """

    def __init__(
        self,
        root: Path,
        db_url: str | None = None,
        protocol: int = 2,
        anonymous_read: bool = False,
        instruments: tuple[str, ...] = ("hispec", "liger"),
        extra_args: tuple[str, ...] = (),
    ):
        self.root = Path(root)
        self.db_url = db_url
        self.protocol = protocol
        self.anonymous_read = anonymous_read
        self.instruments = tuple(instruments)
        self.extra_args = tuple(extra_args)
        self.port = 0
        self.base_url = ""
        self.process: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="koa-archive-", suffix=".log", delete=False
        )
        self._stdout_lines: list[str] = []

    def __repr__(self) -> str:
        return f"ArchiveServer(root={str(self.root)!r}, base_url={self.base_url!r})"

    # -- lifecycle -----------------------------------------------------------------
    def _argv(self) -> list[str]:
        argv = ["serve", "--root", str(self.root), "--host", "127.0.0.1", "--port", str(self.port)]
        argv += _db_args(self.db_url)
        argv += ["--protocol", str(self.protocol)]
        if self.anonymous_read:
            argv.append("--anonymous-read")
        for name in self.instruments:
            argv += ["--instrument", name]
        argv += list(self.extra_args)
        return archive_command(*argv)

    def start(self) -> ArchiveServer:
        """Start the server and wait until it prints its listening line.

        Raises
        ------
        RuntimeError
            If the process exits or stays silent for 60 s; the message holds its log.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            self._argv(),
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        ready = threading.Event()
        found: list[str] = []

        def pump(stream) -> None:
            # Keep reading after the ready line so the pipe never fills up.
            for line in stream:
                self._stdout_lines.append(line)
                if not found and line.startswith(READY_PREFIX):
                    found.append(line[len(READY_PREFIX) :].strip())
                    ready.set()
            ready.set()

        threading.Thread(target=pump, args=(self.process.stdout,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"koa-archive did not start within 60 s:\n{self.log_text()}")
        if not found:
            self.process.wait(timeout=10)
            raise RuntimeError(
                f"koa-archive exited with {self.process.returncode} before listening:\n"
                f"{self.log_text()}"
            )
        self.base_url = found[0]
        self.port = int(self.base_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """Send SIGTERM and wait for the process to exit; return its exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(
                f"koa-archive ignored SIGTERM for {timeout} s:\n{self.log_text()}"
            ) from None

    def kill(self) -> None:
        """Kill the process with SIGKILL (no clean-up on its side) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> ArchiveServer:
        """Stop the server if it runs and start it again on the same port."""
        self.stop()
        return self.start()

    def stdout_lines(self) -> list[str]:
        """Return the lines the server printed on stdout so far (its listening line, ...)."""
        return list(self._stdout_lines)

    def log_text(self) -> str:
        """Return what the server wrote to stderr so far (its log)."""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def __enter__(self) -> ArchiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.kill()
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)


def create_token(root: Path, scope: str, db_url: str | None = None, name: str | None = None) -> str:
    """Create a token with ``koa-archive token create`` and return it.

    Parameters
    ----------
    root : Path
        The archive folder (``--root``).
    scope : str
        ``read``, ``write`` or ``admin``.
    db_url : str | None
        Catalog URL (``--db``), as given to the server.
    name : str | None
        The token's name; the command picks one when None.

    Raises
    ------
    RuntimeError
        If the command fails; the message holds its stderr.
    """
    argv = ["token", "create", "--root", str(root), *_db_args(db_url), "--scope", scope]
    if name:
        argv += ["--name", name]
    result = subprocess.run(archive_command(*argv), capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"koa-archive token create failed: {result.stderr}")
    return result.stdout.strip()


# -- records and files for tests -------------------------------------------------
def make_record(**fields: Any) -> dict[str, Any]:
    """Return a valid archive record with a fresh id; ``fields`` override."""
    key = uuid.uuid4()
    cal_id = str(key)
    record = {
        "id": cal_id,
        # The whole id: eight hex digits met twice in 4,000 records about once in 500 runs.
        "filename": f"cal_{key.hex}.fits",
        "cal_type": "dark",
        "datetime_obs": "2024-01-01T00:00:00.000",
        "origin": "KECK",
        "cal_version": "001",
    }
    record.update(fields)
    return record


def md5_hex(data: bytes) -> str:
    """Return the MD5 hex digest of ``data``."""
    return hashlib.md5(data).hexdigest()


def upload(client: httpx.Client, cal_id: str, data: bytes, inst: str = "hispec") -> httpx.Response:
    """PUT ``data`` as the file of ``cal_id`` (v2), with its MD5."""
    return client.put(f"{inst}/files/{cal_id}", content=data, headers={"X-File-MD5": md5_hex(data)})


def publish(client: httpx.Client, data: bytes, inst: str = "hispec", **fields: Any) -> dict:
    """Upload a file and add its record, as a pipeline does; return the record sent."""
    record = make_record(file_md5=md5_hex(data), file_size=len(data), **fields)
    assert upload(client, record["id"], data, inst).status_code == 201
    response = client.post(f"{inst}/add", json=record)
    assert response.status_code == 200, response.text
    return record


# -- one archive folder served in both protocols ------------------------------------
#: Environment variables that configure a store or client; tests start without them.
KOA_ENVIRONMENT = (
    "KOA_API_TOKEN",
    "KECK_OBSERVER_EMAIL",
    "KECK_OBSERVER_PASSWORD",
    "KECK_LOGIN_URL",
    "KOA_CALIBRATIONS_URL",
    "KOA_CALIBRATION_ORIGIN",
    "KOA_CALIBRATIONS_ORIGIN",
    "KOA_USE_CACHED_CALIBRATIONS",
    "KOA_INSTRUMENT_NAME",
    "KOA_CALIBRATION_CACHE",
    "KOA_CALIBRATION_CACHE_READONLY",
    "KOA_ALLOW_RETRACTED",
    "KOA_LOCK_TIMEOUT",
    "KOA_CACHE_MAX_SIZE",
    "KOA_INSTRUMENT_PROFILE",
    "KOA_LOCAL_CALIBRATION_DATABASE_FILENAME",
    "KOA_LOCAL_CALIBRATION_DATABASE_TABLE_NAME",
    "KOA_LOCAL_DATABASE_FILENAME",
    "KOA_LOCAL_DATABASE_TABLE_NAME",
    "KOA_MAX_ANSWER_BYTES",
    "KOA_PROGRESS",
)


class ArchivePair:
    """Two servers over one archive folder, one speaking protocol 2 and one protocol 1.

    Both see the same records and files; ``tokens`` holds a ``read`` and a
    ``write`` token. ``db_url`` is their catalog (``--db``; None: SQLite in the
    folder). Use as a context manager.
    """

    def __init__(self, root: Path, instruments: tuple[str, ...], db_url: str | None = None):
        self.root = Path(root)
        self.db_url = db_url
        self.tokens = {
            scope: create_token(self.root, scope, db_url=db_url) for scope in ("read", "write")
        }
        self.servers = {
            protocol: ArchiveServer(
                self.root, db_url=db_url, protocol=protocol, instruments=instruments
            )
            for protocol in (2, 1)
        }

    def url(self, protocol: int = 2) -> str:
        """The BASE URL of the server speaking ``protocol``."""
        return self.servers[protocol].base_url

    def __enter__(self) -> ArchivePair:
        try:
            for server in self.servers.values():
                server.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers.values():
            server.__exit__(None, None, None)


def make_client(url: str, instrument: str, token: str | None, **options: Any):
    """A RemoteCalibrationDB for tests: quick retries, so fault tests stay short."""
    from koa_middleware.client.remote_database import RemoteCalibrationDB

    options.setdefault("retries", 3)
    options.setdefault("backoff", 0.05)
    return RemoteCalibrationDB(instrument, url=url, token=token, **options)

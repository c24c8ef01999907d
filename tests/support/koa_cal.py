"""Run ``koa-cal`` as a user would (a subprocess), and build small FITS inputs for it."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

__all__ = [
    "cli_env",
    "closed_port_url",
    "koa_cal",
    "one_error_line",
    "records_in",
    "snapshot",
    "write_cal",
]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment with no store settings of the machine, and HOME inside ``tmp_path``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KOA_", "KECK_")) and k not in ("HOME", "TMPDIR")
    }
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        KOA_INSTRUMENT_NAME="hispec",
        KOA_CALIBRATION_CACHE=str(tmp_path / "cache"),
        KOA_PROGRESS="0",
    )
    env.update(extra)
    return env


def koa_cal(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run ``python -m koa_middleware.cli ARGS`` and return the finished process (text)."""
    return subprocess.run(
        [sys.executable, "-m", "koa_middleware.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """Assert that stderr is exactly one ``Error:`` line without a traceback; return it."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    assert lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def write_cal(path: Path, data_value: float = 1.0, **cards) -> Path:
    """Write a small FITS file; ``cards`` with ``_`` in place of ``-`` (``DATE_OBS``)."""
    import numpy as np
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.full((8, 8), data_value, dtype=np.float32))
    for key, value in cards.items():
        hdu.header[key.replace("_", "-")] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu.writeto(path)
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """MD5 of every file under ``folder`` except SQLite's transient WAL and shared-memory files."""
    result = {}
    if not folder.exists():
        return result
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm")):
            result[str(path.relative_to(folder))] = hashlib.md5(path.read_bytes()).hexdigest()
    return result


def records_in(env: dict[str, str]) -> list[dict]:
    """The records of the cache ``env`` points at, through ``koa-cal query --json``."""
    result = koa_cal("query", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    return sorted(json.loads(result.stdout), key=lambda r: r["id"])


def closed_port_url() -> str:
    """An archive URL on a loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/calibrations"

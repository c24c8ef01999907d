"""Run ``koa-cal`` as another Unix account: ``python -m support.cli_as_account UID GID ARGS...``.

The child imports the command line while the files of Python are still
readable (the interpreter may live in a folder only root can read), then
switches to ``UID``/``GID`` (ids no account uses: nothing on the system is
changed) and runs ``koa-cal ARGS``; its exit status is koa-cal's.

Examples
--------
>>> koa_cal_as(61000, 61000, ["status"], env)  # doctest: +SKIP
CompletedProcess(args=[...], returncode=1, ...)
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent

__all__ = ["koa_cal_as"]


def koa_cal_as(
    uid: int, gid: int, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess:
    """Run ``koa-cal ARGS`` as account ``uid`` (group ``gid``) and return the finished process."""
    child_env = {**env, "PYTHONPATH": str(TESTS_DIR), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "support.cli_as_account", str(uid), str(gid), *args],
        cwd="/",
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def main() -> None:
    """Import the command line, become the account, run it."""
    uid, gid, *args = sys.argv[1:]
    import koa_middleware

    for module in pkgutil.walk_packages(koa_middleware.__path__, "koa_middleware."):
        if not module.name.startswith("koa_middleware.archive"):
            importlib.import_module(module.name)
    for name in (
        "encodings.idna",
        "httpx",
        "httpcore",
        "h11",
        "anyio",
        "sqlite3",
        "astropy.io.fits",
    ):
        importlib.import_module(name)
    from koa_middleware.cli import main as koa_cal

    os.setgroups([])
    os.setgid(int(gid))
    os.setuid(int(uid))
    koa_cal(args)


if __name__ == "__main__":
    main()

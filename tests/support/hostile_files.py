"""Hostile files made in a test's own folder, and a child process that reads them safely.

A file we are handed may be a link to ``/dev/zero`` (read forever, until memory
runs out), a FIFO (an open or a read waits forever), or JSON nested far deeper
than Python's recursion limit. Every such file is made under the test's
temporary folder: the link is created there (``/dev/zero`` itself is never
written), and the FIFO is made there.

:func:`call_in_child` runs ``module:function(*args)`` in a child Python with an
address-space limit and a deadline, so that code which reads forever or waits
forever fails the test instead of the machine: the child reports the
exception's type and message, or ``"hang"`` when it had to be killed.

Examples
--------
>>> outcome = call_in_child("koa_middleware.manifest:read_manifest", str(path))  # doctest: +SKIP
>>> outcome["error"], outcome["message"]  # doctest: +SKIP
('ManifestError', 'The manifest ... is refused: it is a symbolic link; ...')
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["call_in_child", "deep_json", "fifo", "link_to_dev_zero"]

TESTS_DIR = Path(__file__).resolve().parents[1]
#: The child's address space: room for Python, not for a file read forever.
MEMORY_LIMIT = 1 << 30
#: Seconds after which a child still running is taken to hang, and killed.
DEADLINE = 60


def link_to_dev_zero(path: Path) -> Path:
    """Create ``path`` as a symbolic link to ``/dev/zero``; return it."""
    path.symlink_to("/dev/zero")
    return path


def fifo(path: Path) -> Path:
    """Create ``path`` as a FIFO that no process writes to; return it."""
    os.mkfifo(path)
    return path


def deep_json(depth: int, inner: str = "1") -> str:
    """``depth`` nested arrays around ``inner``."""
    return "[" * depth + inner + "]" * depth


def call_in_child(
    target: str,
    *args: Any,
    env: dict[str, str] | None = None,
    account: tuple[int, int] | None = None,
    file_size_limit: int | None = None,
) -> dict[str, Any]:
    """Run ``module:function(*args)`` in a limited child; return what happened.

    Parameters
    ----------
    target : str
        ``module:function``.
    *args
        JSON-able arguments.
    env : dict | None
        The child's environment (default: this process's).
    account : tuple[int, int] | None
        ``(uid, gid)`` the child switches to first (tests run as root), after
        importing every module it needs.
    file_size_limit : int | None
        The child's file-size limit (``RLIMIT_FSIZE``): a larger file fails
        with EFBIG instead of filling the disk.

    Returns
    -------
    dict
        ``{"error": None, "result": repr, "value": the result if JSON-able}``
        when it returned,
        ``{"error": type name, "koa": bool, "message": str}`` when it raised
        (``koa``: the exception is a ``KOAError``), or ``{"error": "hang"}``
        when it ran past :data:`DEADLINE` and was killed.
    """
    child_env = dict(os.environ if env is None else env)
    paths = [str(TESTS_DIR), *filter(None, child_env.get("PYTHONPATH", "").split(os.pathsep))]
    child_env["PYTHONPATH"] = os.pathsep.join(paths)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "support.hostile_files",
                target,
                json.dumps(args),
                json.dumps({"account": account, "file_size_limit": file_size_limit}),
            ],
            env=child_env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
    except subprocess.TimeoutExpired:
        return {"error": "hang"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": "crash", "message": done.stderr[-2000:]}
    return json.loads(lines[-1])


def _run(target: str, args: list[Any]) -> dict[str, Any]:
    module, name = target.split(":")
    function = getattr(importlib.import_module(module), name)
    from koa_middleware.errors import KOAError

    try:
        result = function(*args)
    except BaseException as exc:  # noqa: BLE001 - the point is to report any of them
        return {
            "error": type(exc).__name__,
            "koa": isinstance(exc, KOAError),
            "message": str(exc)[:4000],
        }
    try:
        value = json.loads(json.dumps(result))
    except (TypeError, ValueError):
        value = None
    return {"error": None, "result": repr(result)[:4000], "value": value}


def open_store_logging(instrument: str, cache: str) -> dict[str, Any]:
    """Open a store (no archive) as the environment configures it; its records and warnings."""
    import logging

    from koa_middleware import CalibrationStore

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    keep = Keep()
    logging.getLogger("koa_middleware").addHandler(keep)
    with CalibrationStore(instrument, cache, connect_remote=False) as store:
        ids = sorted(row["id"] for row in store.local_db.rows)
    return {"ids": ids, "warnings": keep.messages}


def main() -> None:
    """The child: limit memory (and file sizes), become the account, call the target."""
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    if options.get("file_size_limit"):
        limit = options["file_size_limit"]
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    if options.get("account"):
        from support.shared_account import _preload

        _preload()
        uid, gid = options["account"]
        os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)
    print(json.dumps(_run(sys.argv[1], json.loads(sys.argv[2]))), flush=True)


if __name__ == "__main__":
    main()

"""The two sides of a cache shared by a Unix group, each in a child process of its own account.

``python -m support.group_attack SPEC`` imports the store while the files of
Python are still readable (the interpreter may live in a folder only root can
read), becomes the account SPEC names (``os.setgroups``, ``os.setgid``,
``os.setuid`` to ids no account uses; nothing on the system changes), sets its
umask and plays one role, talking with the test line by line on its standard
input and output:

``store``    start a store of the cache and close it; say ``started``
``hold_db``  take SQLite's write lock (``BEGIN IMMEDIATE``) on the cache's database,
             say ``locked``; at the line ``swap`` put a link to ``target`` in the
             place of ``tmp/<instrument>``, say ``swapped``; at the next line let go
``swap``     say ``ready``; at ``go``, swap ``tmp/<instrument>`` for a link to
             ``target`` and back, over and over, until standard input ends; say how often
``clean``    say ``ready``; at ``go``, run the cleaning of the temporary folder at least
             ``rounds`` times and until it has run ``linked`` times while the folder
             was a link; say how often each
"""

from __future__ import annotations

import json
import logging
import os
import select
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent.parent
#: The most cleaning rounds a ``clean`` child runs, whatever it has seen.
MAX_ROUNDS = 200_000

__all__ = ["Account", "start_as", "say", "hear"]


class Account:
    """An account: a user id, its primary group, its groups.

    Parameters
    ----------
    uid, gid : int
        The user id and primary group.
    groups : list[int]
        Every group it belongs to.
    """

    def __init__(self, uid: int, gid: int, groups: list[int]):
        self.uid, self.gid, self.groups = uid, gid, groups

    def __repr__(self) -> str:
        return f"Account(uid={self.uid}, gid={self.gid}, groups={self.groups})"


def start_as(account: Account, role: str, cache: Path, **args: Any) -> subprocess.Popen:
    """Start ``role`` as ``account`` on the cache ``cache``; talk with it by lines."""
    spec = {
        "uid": account.uid,
        "gid": account.gid,
        "groups": account.groups,
        "umask": 0o002,
        "role": role,
        "cache": str(cache),
        "args": args,
    }
    paths = [str(TESTS_DIR), str(TESTS_DIR.parent)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOA_", "KECK_", "XDG_"))}
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONDONTWRITEBYTECODE="1", KOA_PROGRESS="0")
    return subprocess.Popen(
        [sys.executable, "-m", "support.group_attack", json.dumps(spec)],
        cwd="/",
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def say(child: subprocess.Popen, line: str) -> None:
    """Send ``line`` to the child."""
    child.stdin.write(line + "\n")
    child.stdin.flush()


def hear(child: subprocess.Popen) -> str:
    """The child's next line; its error output when it ended instead."""
    line = child.stdout.readline()
    if not line:
        child.wait(timeout=60)
        raise AssertionError(f"the child ended ({child.returncode}): {child.stderr.read()}")
    return line.strip()


# -- the child's side ------------------------------------------------------------------------


def _store(cache: Path, instrument: str) -> None:
    from koa_middleware import CalibrationStore

    with CalibrationStore(instrument, str(cache), connect_remote=False, sync_on_init=False):
        pass
    print("started", flush=True)


def _swap_in(tmp: Path, target: str) -> None:
    """Put a link to ``target`` in the place of the folder ``tmp`` (kept beside it)."""
    os.rename(tmp, tmp.with_name(tmp.name + ".away"))
    os.symlink(target, tmp)


def _swap_back(tmp: Path) -> None:
    os.unlink(tmp)
    os.rename(tmp.with_name(tmp.name + ".away"), tmp)


def _hold_db(cache: Path, instrument: str, target: str) -> None:
    database = cache / "database" / f"{instrument}_calibrations.db"
    conn = sqlite3.connect(str(database), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    _swap_in(cache / "tmp" / instrument, target)
    print("swapped", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    conn.close()


def _swap(cache: Path, instrument: str, target: str) -> None:
    tmp = cache / "tmp" / instrument
    print("ready", flush=True)
    sys.stdin.readline()
    swaps = 0
    while not select.select([sys.stdin], [], [], 0)[0]:
        _swap_in(tmp, target)
        _swap_back(tmp)
        swaps += 1
    print(swaps, flush=True)


def _clean(cache: Path, instrument: str, rounds: int, linked: int) -> None:
    from koa_middleware.cache.layout import CacheLayout

    logging.disable(logging.CRITICAL)  # a warning per round while the folder is a link
    layout = CacheLayout(cache, instrument)
    tmp = layout.tmp_dir
    print("ready", flush=True)
    sys.stdin.readline()
    done = seen = 0
    while (done < rounds or seen < linked) and done < MAX_ROUNDS:
        seen += os.path.islink(tmp)
        layout.clean_temp()
        done += 1
    print(json.dumps({"rounds": done, "linked": seen}), flush=True)


def _preload() -> None:
    import importlib
    import pkgutil

    import koa_middleware

    for module in pkgutil.walk_packages(koa_middleware.__path__, "koa_middleware."):
        if not module.name.startswith(("koa_middleware.archive", "koa_middleware.cli")):
            importlib.import_module(module.name)
    importlib.import_module("encodings.idna")


def main() -> None:
    """Become the account the JSON spec in ``sys.argv[1]`` names and play its role."""
    spec = json.loads(sys.argv[1])
    _preload()
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    os.umask(spec["umask"])
    cache, args = Path(spec["cache"]), spec["args"]
    instrument = args.pop("instrument", "hispec")
    roles = {"store": _store, "hold_db": _hold_db, "swap": _swap, "clean": _clean}
    roles[spec["role"]](cache, instrument, **args)


if __name__ == "__main__":
    main()

"""Run a calibration store as another Unix account, for tests of caches shared by a group.

Tests run as root. :func:`run_as` starts ``python -m support.shared_account`` in a
child process that first calls ``os.setgroups``, ``os.setgid`` and ``os.setuid``
(to ids no account uses: no account needs to exist, and the system's user
database is never touched), sets its umask, and then runs the steps it was given
against a store, printing what they returned as JSON.

Steps (a list of ``[name, argument]``):

``["register", [prefix, n]]``  register ``n`` darks, return their paths
``["sync", null]``             sync the archive's records, then get every file
``["get", [ids]]``             ``get_calibration`` of each id, return the paths
``["read_all", null]``         read every file of the local database, return their count
``["lock", cal_id]``           take and release the lock of ``cal_id``
``["prune", max_size]``        prune the cache to ``max_size`` bytes, return the removed files
``["census", null]``           the records without a file, and the bytes the cache holds
``["bulk_add", [start, n]]``   add ``n`` records (from ``start``) in one ``local_db.add``

Examples
--------
>>> ids = unused_ids(2)  # doctest: +SKIP
>>> run_as(ids[0], ids[1], [ids[1]], 0o002, cache, [["register", ["a", 2]]])  # doctest: +SKIP
{'register': [...]}
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent.parent
FIRST_ID = 61_000


def unused_ids(count: int) -> list[int]:
    """``count`` ids that neither an account nor a group of this system uses."""
    found: list[int] = []
    candidate = FIRST_ID
    while len(found) < count:
        try:
            pwd.getpwuid(candidate)
        except KeyError:
            try:
                grp.getgrgid(candidate)
            except KeyError:
                found.append(candidate)
        candidate += 1
    return found


@contextmanager
def reachable_folder() -> Iterator[Path]:
    """A new folder that every account may enter (``rwxr-xr-x``), removed afterwards.

    pytest's own temporary folders are private to the account running the tests,
    so the other accounts' folders live here instead.
    """
    folder = Path(tempfile.mkdtemp(prefix="koa-shared-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def account_folder(parent: Path, uid: int, gid: int) -> Path:
    """A private folder of account ``uid`` inside ``parent`` (its home for the child)."""
    folder = parent / f"home-{uid}"
    folder.mkdir(mode=0o700)
    os.chown(folder, uid, gid)
    return folder


def run_as(
    uid: int,
    gid: int,
    groups: list[int],
    umask: int,
    cache: Path,
    steps: list[list[Any]],
    env: dict[str, str] | None = None,
    instrument: str = "hispec",
) -> dict[str, Any]:
    """Run ``steps`` on a store of ``cache`` as account ``uid`` (group ``gid``, ``groups``).

    Parameters
    ----------
    uid, gid : int
        The account and its primary group.
    groups : list[int]
        Its supplementary groups.
    umask : int
        The umask it works under.
    cache : Path
        The writable cache folder.
    steps : list
        ``[name, argument]`` pairs (see the module's documentation).
    env : dict | None
        More environment variables (the archive's URL and token, a home folder).
    instrument : str
        The instrument.

    Returns
    -------
    dict
        Step name -> what it returned.

    Raises
    ------
    AssertionError
        If the child fails; the message holds its stderr.
    """
    spec = {
        "uid": uid,
        "gid": gid,
        "groups": groups,
        "umask": umask,
        "cache": str(cache),
        "instrument": instrument,
        "steps": steps,
    }
    child_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KOA_", "KECK_", "XDG_"))
    }
    child_env.update(
        {
            "PYTHONDONTWRITEBYTECODE": "1",
            # the package of this checkout, not whichever one is installed
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(TESTS_DIR.parent)]),
            "KOA_PROGRESS": "0",
            **(env or {}),
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "support.shared_account", json.dumps(spec)],
        cwd="/",
        env=child_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"The store run as uid {uid} failed ({result.returncode}):\n{result.stderr}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _preload() -> None:
    """Import every module the store may need while the files of Python are still readable.

    The interpreter may live in a folder only root can read (such as ``/root``).
    """
    import importlib
    import pkgutil

    import koa_middleware

    for module in pkgutil.walk_packages(koa_middleware.__path__, "koa_middleware."):
        if not module.name.startswith(("koa_middleware.archive", "koa_middleware.cli")):
            importlib.import_module(module.name)
    for name in ("support.models", "encodings.idna", "httpx", "httpcore", "h11", "anyio"):
        importlib.import_module(name)


def _become(spec: dict[str, Any]) -> None:
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    os.umask(spec["umask"])


def _run(spec: dict[str, Any]) -> dict[str, Any]:
    from koa_middleware import CalibrationStore
    from support.models import FileModel, dark

    results: dict[str, Any] = {}
    remote = bool(os.environ.get("KOA_CALIBRATIONS_URL"))
    with CalibrationStore(
        spec["instrument"], spec["cache"], connect_remote=remote, sync_on_init=False
    ) as store:
        for name, argument in spec["steps"]:
            if name == "register":
                prefix, count = argument
                paths = []
                for i in range(count):
                    record = dark(i, filename=f"{prefix}_{i:03d}.fits")
                    data = f"{prefix} {i}".encode() * 100
                    path, _ = store.register_calibration(
                        FileModel(record, data=data), new_version=True
                    )
                    paths.append(path)
                results[name] = paths
            elif name == "sync":
                store.sync_records_from_remote()
                results[name] = [store.get_calibration(r)[0] for r in store.local_db.rows]
            elif name == "get":
                results[name] = [store.get_calibration(cal_id)[0] for cal_id in argument]
            elif name == "read_all":
                count = 0
                for row in store.local_db.rows:
                    path, _ = store.get_calibration(row)
                    Path(path).read_bytes()
                    count += 1
                results[name] = count
            elif name == "prune":
                results[name] = [item["filename"] for item in store.prune(argument).removed]
            elif name == "census":
                census = store.cache.file_census()
                results[name] = {"missing": census.missing, "own_bytes": census.own_bytes}
            elif name == "bulk_add":
                start, count = argument
                records = [
                    dark(i, id=str(uuid.UUID(int=i + 1, version=4)), filename=f"bulk_{i:07d}.fits")
                    for i in range(start, start + count)
                ]
                results[name] = len(store.local_db.add(records))
            elif name == "lock":
                with store.layout.lock(argument):
                    results[name] = store.layout.in_use(argument)
            else:
                raise ValueError(f"Unknown step {name!r}.")
    return results


def main() -> None:
    """Become the account the JSON spec in ``sys.argv[1]`` names and run its steps."""
    spec = json.loads(sys.argv[1])
    _preload()
    _become(spec)
    print(json.dumps(_run(spec)), flush=True)


if __name__ == "__main__":
    main()

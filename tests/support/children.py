"""Child Python processes for tests: what they run, and how a test starts them and waits.

A test runs a child as ``python -m support.children NAME ARGS...``, with the
``tests`` folder on its path, through :func:`run_child` (run it to the end) or
:func:`start_child` (run it beside the test). A dotted NAME is a module with a
``main`` of its own (``support.register_worker``), run with ``-m`` the same way.

Children that several processes start together say that they are ready by
creating a file, ``ready-<n>`` in a folder the test gives them
(:func:`ready_file`); the test waits for every one of them, with a deadline
(:func:`wait_until_ready`), before it lets them go.

This module imports nothing of ``koa_middleware`` at its top, and must not:
each child imports what it uses inside its function, so that
:func:`imported_modules` sees only what the modules it is given load, and a
child meeting a full disk fills it before anything else runs.

Examples
--------
>>> result = run_child("last_updated", "http://127.0.0.1:8000/api")  # doctest: +SKIP
>>> processes = [start_child("fetch_calibration", *argv) for argv in argvs]  # doctest: +SKIP
>>> wait_until_ready(ready_folder, processes)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "TESTS_DIR",
    "child_command",
    "run_child",
    "start_child",
    "ready_file",
    "wait_until_ready",
    "stop_children",
]

TESTS_DIR = Path(__file__).resolve().parents[1]
#: How often a waiting process looks again for a file it waits for.
POLL_INTERVAL = 0.01
#: How long a child waits for its start signal before it gives up.
GO_TIMEOUT = 120.0
#: What a child is given in place of a file it should neither create nor wait for.
NO_FILE = "-"


# -- the test's side ----------------------------------------------------------------


def child_command(name: str, *args: object) -> list[str]:
    """The command line of child ``name``: a function of this module, or a dotted module."""
    if "." in name:
        return [sys.executable, "-m", name, *map(str, args)]
    return [sys.executable, "-m", "support.children", name, *map(str, args)]


def child_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (by default this process's environment) with the tests folder on the path."""
    environment = dict(os.environ if env is None else env)
    paths = [str(TESTS_DIR), *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    return environment


def run_child(
    name: str,
    *args: object,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    **run_kwargs,
) -> subprocess.CompletedProcess:
    """Run child ``name`` to its end; its standard output and error are kept, as text."""
    run_kwargs = {"capture_output": True, "text": True, **run_kwargs}
    return subprocess.run(
        child_command(name, *args), env=child_environment(env), timeout=timeout, **run_kwargs
    )


def start_child(
    name: str, *args: object, env: Mapping[str, str] | None = None, **popen_kwargs
) -> subprocess.Popen:
    """Start child ``name`` beside the test; ``popen_kwargs`` go to :class:`subprocess.Popen`."""
    return subprocess.Popen(child_command(name, *args), env=child_environment(env), **popen_kwargs)


def ready_file(folder: Path, n: int) -> Path:
    """The file child ``n`` creates in ``folder`` once it is ready."""
    return Path(folder) / f"ready-{n}"


def wait_until_ready(
    folder: Path, processes: Sequence[subprocess.Popen], timeout: float = 60.0
) -> None:
    """Wait until child ``n`` of ``processes`` has created ``ready_file(folder, n)``, for each n.

    A child that exits before it is ready, or a deadline that passes, stops
    every child and fails the test with what went wrong.
    """
    deadline = time.monotonic() + timeout
    waiting = set(range(len(processes)))
    while True:
        waiting = {n for n in waiting if not ready_file(folder, n).exists()}
        if not waiting:
            return
        exited = sorted(n for n in waiting if processes[n].poll() is not None)
        if exited:
            n = exited[0]
            stop_children(processes)
            _, err = processes[n].communicate()
            if isinstance(err, bytes):
                err = err.decode(errors="replace")
            raise AssertionError(
                f"child {n} exited with {processes[n].returncode} before it was ready: {err}"
            )
        if time.monotonic() > deadline:
            stop_children(processes)
            raise AssertionError(
                f"children {sorted(waiting)} were not ready after {timeout:g} s"
                f" (no {ready_file(folder, min(waiting))})"
            )
        time.sleep(POLL_INTERVAL)


def release_and_finish(
    processes: Sequence[subprocess.Popen], ready: Path, go: Path, timeout: float = 240.0
) -> None:
    """Wait until every child is ready, let them all go at once, and wait for them.

    Fails the test, naming the child's stderr, if any child exits with a status
    other than 0; children still running then are stopped.
    """
    wait_until_ready(ready, processes)
    Path(go).touch()
    try:
        for process in processes:
            _, err = process.communicate(timeout=timeout)
            if isinstance(err, bytes):
                err = err.decode(errors="replace")
            assert process.returncode == 0, err
    finally:
        stop_children(processes)


def stop_children(processes: Sequence[subprocess.Popen]) -> None:
    """Kill the children that still run, and wait for them."""
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        process.wait()


# -- the child's side ---------------------------------------------------------------


def announce_ready(path: str | os.PathLike) -> None:
    """Tell the test that this child is ready (a no-op for :data:`NO_FILE`)."""
    if os.fspath(path) != NO_FILE:
        Path(path).touch()


def wait_for_go(path: str | os.PathLike, timeout: float = GO_TIMEOUT) -> None:
    """Wait until the test creates ``path`` (at once for :data:`NO_FILE`)."""
    if os.fspath(path) == NO_FILE:
        return
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"no start signal ({path}) within {timeout:g} s")
        time.sleep(POLL_INTERVAL)


def _fill_disk(limit: str) -> None:
    """Make this process meet a full disk: ``ENOSPC`` on every file write, or ``EFBIG``."""
    from support.full_disk import fail_file_writes_with_enospc, limit_file_size

    if limit == "ENOSPC":
        fail_file_writes_with_enospc()
    elif limit == "EFBIG":
        limit_file_size(256 << 10)  # far below the files the tests write
    else:
        raise SystemExit(f"unknown disk limit {limit!r}: ENOSPC or EFBIG")


def _cache_full(exc) -> dict:
    return {
        "raised": "CacheFullError",
        "errno": exc.errno,
        "message": str(exc),
        "folder": exc.folder,
        "needed": exc.needed,
        "oserror": isinstance(exc, OSError),
    }


def register_on_full_disk(cache: str) -> None:
    """Register a 1 MiB dark on a full disk; print what was raised, as one JSON line."""
    _fill_disk("ENOSPC")
    from koa_middleware import CalibrationStore
    from koa_middleware.errors import CacheFullError
    from support.models import FileModel, dark

    store = CalibrationStore("hispec", cache, connect_remote=False)
    try:
        store.register_calibration(FileModel(dark(1), data=b"z" * (1 << 20)))
        out = {"raised": None}
    except CacheFullError as exc:
        out = _cache_full(exc)
    store.close()
    print(json.dumps(out))


def download_on_full_disk(limit: str, cache: str, instrument: str, cal_id: str) -> None:
    """Get ``cal_id`` from the archive of the environment with the disk full (``limit``).

    Prints what was raised, as one JSON line.
    """
    _fill_disk(limit)
    from koa_middleware import CalibrationStore
    from koa_middleware.errors import CacheFullError

    store = CalibrationStore(instrument, cache, sync_on_init=False)
    try:
        store.get_calibration(cal_id)
        out = {"raised": None}
    except CacheFullError as exc:
        out = _cache_full(exc)
    store.close()
    print(json.dumps(out))


def die_between_rename_and_commit(cache: str) -> None:
    """Register one dark; SIGKILL this process once its file is in place, before the commit."""
    import koa_middleware.cache.registration as registration
    from koa_middleware import CalibrationStore
    from support.models import FileModel

    real_place_file = registration.place_file

    def place_then_die(source, destination):
        real_place_file(source, destination)
        os.kill(os.getpid(), signal.SIGKILL)  # the worst moment: file in place, not committed

    registration.place_file = place_then_die
    store = CalibrationStore("hispec", cache, connect_remote=False)
    record = {"filename": "doomed.fits", "cal_type": "dark", "datetime_obs": "2024-05-01T00:00:00"}
    store.register_calibration(FileModel(record))


def die_in_bulk_add(db_path: str, moment: str, count: str) -> None:
    """Add ``count`` records to ``db_path`` in one call; SIGKILL this process at ``moment``.

    ``dropped``: once the table's indexes are dropped; ``rows``: once every
    row is written, before the indexes are made again. Neither is committed.
    """
    import koa_middleware.database.bulk_load as bulk_load
    from koa_middleware import LocalCalibrationDB
    from support.bulk_records import many_records

    def die(real):
        def call_then_die(*args, **kwargs):
            real(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

        return call_then_die

    if moment == "dropped":
        bulk_load._dropped = die(bulk_load._dropped)
    elif moment == "rows":
        LocalCalibrationDB._upsert = die(LocalCalibrationDB._upsert)
    else:
        raise SystemExit(f"unknown moment {moment!r}: dropped or rows")
    records = many_records(int(count), ["dark", "flat"], {}, start=1_000_000)
    LocalCalibrationDB(db_path, "hispec").add(records)
    raise SystemExit("the add ended without reaching the moment")


def pause_between_rename_and_commit(cache: str, ready: str, go: str) -> None:
    """Register one dark, pausing once its file is in place and before the commit.

    The child creates ``ready`` when the file is in place (its pending marker
    locked, its record written but not committed), waits for ``go``, then
    commits and prints the calibration's id.
    """
    import koa_middleware.cache.registration as registration
    from koa_middleware import CalibrationStore
    from support.models import FileModel

    real_place_file = registration.place_file

    def place_then_pause(source, destination):
        real_place_file(source, destination)
        announce_ready(ready)
        wait_for_go(go)

    registration.place_file = place_then_pause
    record = {"filename": "late.fits", "cal_type": "dark", "datetime_obs": "2024-05-01T00:00:00"}
    with CalibrationStore("hispec", cache, connect_remote=False) as store:
        _path, stored = store.register_calibration(FileModel(record))
    print(stored["id"])


def fetch_calibration(
    url: str,
    token: str,
    cache: str,
    cal_id: str,
    entry: str,
    go: str = NO_FILE,
    ready: str = NO_FILE,
) -> None:
    """Download hispec calibration ``cal_id`` into ``cache``, and print its path.

    ``entry`` is ``fetch`` (query the record, then ``fetch_to_cache``) or
    ``store`` (the whole store: record lookup on the archive, local add, then
    the download). Once the archive has answered, the child creates ``ready``,
    then waits for ``go`` before it downloads.
    """
    from koa_middleware.cache.layout import CacheLayout
    from koa_middleware.client.downloads import fetch_to_cache
    from koa_middleware.client.remote_database import RemoteCalibrationDB
    from koa_middleware.store import CalibrationStore

    if entry == "store":
        os.environ.update(KOA_CALIBRATIONS_URL=url, KOA_API_TOKEN=token)
        store = CalibrationStore(instrument_name="hispec", cache_dir=cache, sync_on_init=False)
        announce_ready(ready)
        wait_for_go(go)
        path, record = store.get_calibration(cal_id)
        if record["id"] != cal_id:
            raise SystemExit(f"asked for {cal_id}, got {record['id']}")
        store.close()
    else:
        with RemoteCalibrationDB("hispec", url=url, token=token, backoff=0.1) as remote:
            record = remote.query(cal_id=cal_id)
            print(f"archive protocol {remote.protocol}", file=sys.stderr)  # detected now
            announce_ready(ready)
            wait_for_go(go)
            path = fetch_to_cache(remote, record, CacheLayout(cache, "hispec"))
    print(path)


def get_and_check(instrument: str, cache: str, cal_id: str) -> None:
    """Get ``cal_id`` through a store on the archive of the environment.

    Prints whether the file's MD5 is the record's, then the file's path.
    """
    from koa_middleware import CalibrationStore
    from koa_middleware.hashing import file_md5

    store = CalibrationStore(instrument, cache, sync_on_init=False)
    path, record = store.get_calibration(cal_id)
    print(file_md5(path) == record["file_md5"], path)


def last_updated(url: str) -> None:
    """Print the archive's last update, asked with the credentials of the environment."""
    from koa_middleware.client.remote_database import RemoteCalibrationDB

    remote = RemoteCalibrationDB("hispec", url=url)
    print(remote.get_last_updated())


def keck_session_get(url: str) -> None:
    """GET ``url`` in the session of a new ``KeckObserverAuthClient``; print the answer."""
    from koa_middleware.client.keck_client import KeckObserverAuthClient

    client = KeckObserverAuthClient()
    answer = client.session.get(url)
    print(answer.status_code, answer.json()["last_updated"])


def fits_record_without_astropy(path: str) -> None:
    """Read ``path`` with astropy impossible to import; print the ImportError."""
    sys.modules["astropy"] = None  # every import of astropy fails from now on
    from koa_middleware.fits import fits_record

    try:
        fits_record(path)
    except ImportError as exc:
        print(exc)


def imported_modules(*names: str) -> None:
    """Import each ``module`` (or ``module:name``, taken from it); print every module loaded."""
    for name in names:
        module_name, _, attribute = name.partition(":")
        module = importlib.import_module(module_name)
        if attribute:
            getattr(module, attribute)
    print(" ".join(sorted(sys.modules)))


def hold_lock(cache: str, cal_id: str) -> None:
    """Hold calibration ``cal_id``'s lock, say ``locked``, and keep it until killed.

    It waits for its standard input to end, which happens only when the test
    kills it (or closes the pipe).
    """
    from koa_middleware.cache.layout import CacheLayout

    with CacheLayout(cache, "hispec").lock(cal_id):
        print("locked", flush=True)
        sys.stdin.read()


CHILDREN: dict[str, Callable[..., None]] = {
    child.__name__: child
    for child in (
        register_on_full_disk,
        download_on_full_disk,
        die_between_rename_and_commit,
        pause_between_rename_and_commit,
        fetch_calibration,
        get_and_check,
        last_updated,
        keck_session_get,
        fits_record_without_astropy,
        imported_modules,
        hold_lock,
        die_in_bulk_add,
    )
}


def main(argv: Sequence[str] | None = None) -> None:
    name, *args = sys.argv[1:] if argv is None else argv
    if name not in CHILDREN:
        raise SystemExit(f"no child named {name!r}; there are: {', '.join(sorted(CHILDREN))}")
    CHILDREN[name](*args)


if __name__ == "__main__":
    main()

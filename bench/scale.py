"""How the local store's figures grow with the number of records.

Run: ``python bench/scale.py`` (``--sizes 1000 10000`` for a short run; the
default is 1,000, 10,000, 100,000 and 1,000,000 records).

For each size N, a cache laid out as in ``bench/local.py`` (1 KiB file per
record) is filled with one ``local_db.add`` and measured:

- bulk add of N records (seconds, and microseconds per record);
- ``select_and_get_calibration`` p50/p95 and ``get_calibration(id)`` p50;
- open time (median of 20 opens, import excluded);
- ``koa-cal status`` the first time after the add, and asked again of the
  unchanged cache (its count kept, see ``koa_middleware.cache.census_memo``);
  beside the first, its floor: a bare Python process that reads the records'
  file names and lists the folder, which is what any status of a changed
  cache must do (``STATUS_FLOOR``);
  ``koa-cal verify`` (every file present) beside its floor (every file opened
  and put through MD5, plain, in this process) and
  ``koa-cal prune`` down to half the files, each as a command (wall time,
  a Python start-up included; for prune also its CPU seconds, steadier on a
  shared machine, and its floor: the same number of plain ``os.unlink`` calls
  in a folder of N files written out as long, which is most of a prune's time
  and grows with the file system, not with the prune);
- the database's size per record;
- with ``sync``: against a ``koa-archive`` on 127.0.0.1 started here (SQLite
  catalog, records only, grown to N records), the first v2
  ``sync_records_from_remote()`` into an empty cache (seconds, and the client
  process's peak RSS) and then an incremental sync of 100 new records (ms),
  each in a fresh process (``bench/sync.py``'s client), with the client's CPU
  time beside each. Targets at 1,000,000
  records: first sync < 40 s at peak RSS < 400 MB, incremental < 100 ms.

``--only sync`` (or ``prune``, ``local``) takes one group of figures.

After the table, each figure's growth from one size to the next is printed
beside the growth of N: a ratio well above N's means worse than linear.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from local import (  # noqa: E402 - the benchmark next to this one
    PAYLOAD,
    DarkSelector,
    cached_records,
    file_digest_of_payload,
    percentile,
    time_selections,
)
from sync import INSTRUMENT, load_records, run_client, verdict  # noqa: E402

from koa_middleware import CalibrationStore  # noqa: E402
from koa_middleware.cache import census_memo  # noqa: E402
from koa_middleware.client.remote_database import RemoteCalibrationDB  # noqa: E402
from support.archive import ArchiveServer, create_token  # noqa: E402

LOOKUPS = 1_000
#: The groups of figures ``--only`` chooses from.
PARTS = {"local", "prune", "sync"}
#: New records of the incremental sync.
NEW_RECORDS = 100
#: At 1,000,000 records: first sync seconds, its peak RSS (MB), incremental sync seconds.
SYNC_TARGETS = (40.0, 400.0, 0.1)


def fill(cache: Path, root: Path, n: int) -> float:
    """Fill ``cache`` with ``n`` records and their files; return the seconds of the add."""
    md5, size = file_digest_of_payload(root)
    with CalibrationStore("hispec", str(cache), connect_remote=False) as store:
        records = cached_records(store, n, md5, size)
        t0 = time.perf_counter()
        store.local_db.add(records)
        return time.perf_counter() - t0


def lookups(cache: Path, n: int) -> dict[str, float]:
    """Selection p50/p95 and get p50, in milliseconds."""
    with CalibrationStore("hispec", str(cache), connect_remote=False) as store:
        ids = [row[0] for row in store.local_db.conn.execute("SELECT id FROM hispec LIMIT 2000")]
        select = time_selections(store, DarkSelector(), n, LOOKUPS)
        gets = []
        for cal_id in ids[:LOOKUPS]:
            t0 = time.perf_counter()
            store.get_calibration(cal_id)
            gets.append(time.perf_counter() - t0)
    return {
        "select p50 ms": percentile(select, 0.5) * 1e3,
        "select p95 ms": percentile(select, 0.95) * 1e3,
        "get p50 ms": percentile(gets, 0.5) * 1e3,
    }


def open_ms(cache: Path, opens: int = 20) -> float:
    times = []
    for _ in range(opens):
        t0 = time.perf_counter()
        store = CalibrationStore("hispec", str(cache), connect_remote=False)
        times.append(time.perf_counter() - t0)
        store.close()
    return statistics.median(times) * 1e3


def command_seconds(cache: Path, *args: str) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of ``koa-cal ... --cache-dir cache ARGS``.

    On a shared machine the CPU seconds move less than the wall time.
    """
    env = {**os.environ, "KOA_PROGRESS": "0"}
    # As installed: modules run from cached bytecode, not compiled again at each start.
    for name in (
        "KOA_CALIBRATIONS_URL",
        "KOA_API_TOKEN",
        "KOA_CALIBRATION_CACHE_READONLY",
        "PYTHONDONTWRITEBYTECODE",
    ):
        env.pop(name, None)
    command = [sys.executable, "-m", "koa_middleware.cli", "--instrument", "hispec"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [*command, "--cache-dir", str(cache), *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def status_again(cache: Path) -> float:
    """``koa-cal status`` asked again of the unchanged cache (its count kept), in seconds.

    A count is kept only of a folder and database unchanged for two seconds
    (``census_memo.SETTLED_NS``); at small sizes they were just written, so this
    waits that long, asks once (which keeps the count), and times the next.
    """
    database = cache / "database" / "hispec_calibrations.db"
    watched = (cache / "calibrations" / "hispec", database, Path(f"{database}-wal"))
    changed = max(path.stat().st_mtime for path in watched if path.exists())
    settled_at = changed + census_memo.SETTLED_NS / 1e9 + 0.1
    time.sleep(max(0.0, settled_at - time.time()))
    command_seconds(cache, "status")
    return command_seconds(cache, "status")[0]


#: The least a status of a changed cache does, in a bare process: one read of the records'
#: file names (from their index) and of their sizes' sum, one listing of the folder, and
#: the two differences (records without a file, files without a record).
STATUS_FLOOR = """
import os, sqlite3, sys
folder, database = sys.argv[1:]
conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
recorded = {name for (name,) in conn.execute("SELECT filename FROM hispec")}
listed = set(os.listdir(folder))
missing, strays = recorded - listed, listed - recorded
(size,) = conn.execute("SELECT sum(file_size) FROM hispec").fetchone()
print(len(missing), len(strays), size)
"""


def status_floor(cache: Path, runs: int = 2) -> float:
    """Seconds of :data:`STATUS_FLOOR` on ``cache``, the better of ``runs``, Python's start in.

    Taken after the status it is compared with, on caches as warm: if anything, low.
    """
    database = cache / "database" / "hispec_calibrations.db"
    argv = [
        sys.executable,
        "-c",
        STATUS_FLOOR,
        str(cache / "calibrations" / "hispec"),
        str(database),
    ]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return min(times)


def verify_floor(folder: Path) -> float:
    """Seconds to read and hash every file of ``folder``, plain: what a verify cannot go below.

    Each file opened, its size looked at and its bytes put through MD5, as
    ``koa-cal verify`` does for each record's file; taken just after the
    verify, on a cache as warm.
    """
    t0 = time.perf_counter()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in os.listdir(fd):
            file = os.open(name, os.O_RDONLY, dir_fd=fd)
            try:
                os.fstat(file)
                hashlib.md5(os.read(file, 1 << 20), usedforsecurity=False).hexdigest()
            finally:
                os.close(file)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def unlink_floor(folder: Path, n: int) -> float:
    """Seconds to remove the older half of ``n`` files of 1 KiB from one folder, plain.

    What a prune cannot go below on this file system: the same number of
    ``os.unlink`` calls, in a folder as large, of files as long written out.
    """
    folder.mkdir()
    names = [f"cal_{i:07d}.fits" for i in range(n)]
    for name in names:
        (folder / name).write_bytes(PAYLOAD)
    os.sync()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        t0 = time.perf_counter()
        for name in names[: n // 2]:
            os.unlink(name, dir_fd=fd)
        seconds = time.perf_counter() - t0
    finally:
        os.close(fd)
    shutil.rmtree(folder)
    return seconds


def measure(root: Path, n: int, parts: set[str]) -> dict[str, float]:
    cache = root / f"n{n}"
    figures = {"bulk add s": fill(cache, root, n)}
    figures["add us/record"] = figures["bulk add s"] / n * 1e6
    if "local" in parts:
        figures.update(lookups(cache, n))
        figures["open ms"] = open_ms(cache)
        figures["status s"] = command_seconds(cache, "status")[0]
        figures["status floor s"] = status_floor(cache)
        figures["status again s"] = status_again(cache)
        figures["verify s"] = command_seconds(cache, "verify")[0]
        figures["verify floor s"] = verify_floor(cache / "calibrations" / "hispec")
    os.sync()  # the prune meets files already written out, as in a cache filled long ago
    figures["prune s"], figures["prune cpu s"] = command_seconds(
        cache, "prune", "--max-size", str(n * 512)
    )
    if "prune" in parts:
        figures["prune floor s"] = unlink_floor(root / f"floor{n}", n)
    database = cache / "database" / "hispec_calibrations.db"
    figures["db bytes/record"] = database.stat().st_size / n
    shutil.rmtree(cache)
    return figures


class SyncArchive:
    """An archive on 127.0.0.1 (SQLite catalog) grown size after size, and syncs from it.

    Parameters
    ----------
    work : Path
        A folder for the archive and the clients' caches.
    """

    def __init__(self, work: Path):
        self.work = work
        self.loaded = 0
        root = work / "archive"
        token = create_token(root, "write")
        self.env = dict(os.environ, KOA_API_TOKEN=token, KOA_PROGRESS="0")
        for name in ("KECK_OBSERVER_EMAIL", "KECK_OBSERVER_PASSWORD", "KOA_CALIBRATION_CACHE"):
            self.env.pop(name, None)
        self.server = ArchiveServer(root, instruments=(INSTRUMENT,))
        self.remote: RemoteCalibrationDB | None = None
        self.token = token

    def __enter__(self) -> SyncArchive:
        self.server.__enter__()
        self.env["KOA_CALIBRATIONS_URL"] = self.server.base_url
        self.remote = RemoteCalibrationDB(INSTRUMENT, url=self.server.base_url, token=self.token)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remote.close()
        self.server.__exit__(*exc_info)

    def grow(self, count: int) -> float:
        """Add records until the archive holds ``count``; return the seconds taken."""
        t0 = time.perf_counter()
        load_records(self.remote, count - self.loaded, start=self.loaded)
        self.loaded = max(self.loaded, count)
        return time.perf_counter() - t0

    def measure(self, n: int) -> dict[str, float]:
        """First sync of ``n`` records into an empty cache, then of :data:`NEW_RECORDS` more."""
        loading = self.grow(n)
        cache = self.work / f"sync{n}"
        first = run_client(self.env, "sync", str(cache))
        self.grow(n + NEW_RECORDS)
        again = run_client(self.env, "sync", str(cache))
        shutil.rmtree(cache)
        if (first["added"], again["added"]) != (n, NEW_RECORDS):
            raise SystemExit(f"sync brought {first['added']} then {again['added']} records")
        print(f"  (archive grown to {n:,} records in {loading:.1f} s)", flush=True)
        return {
            "first sync s": first["seconds"],
            "first sync cpu s": first["cpu_seconds"],
            "first sync peak MB": first["peak_rss_mb"],
            "incremental sync ms": again["seconds"] * 1e3,
            "incremental sync cpu ms": again["cpu_seconds"] * 1e3,
        }


def status_verdict(results: dict[int, dict[str, float]]) -> None:
    """The status target (under 1 s), judged at 1,000,000 records when measured there."""
    figures = results.get(1_000_000)
    if not figures or "status s" not in figures:
        return
    first, again, floor = (figures[f"status {k}s"] for k in ("", "again ", "floor "))
    print(
        f"at 1,000,000: koa-cal status {first:.2f} s the first time after a change, "
        f"{again:.2f} s asked again [target < 1 s: {verdict(again < 1.0)} asked again, "
        f"{verdict(first < 1.0)} the first time; the floor of the first time, a bare process "
        f"listing the folder and reading the names, {floor:.2f} s, ratio {first / floor:.2f}]"
    )


def sync_verdicts(results: dict[int, dict[str, float]]) -> None:
    """The sync targets, judged at 1,000,000 records when measured there."""
    figures = results.get(1_000_000)
    if not figures or "first sync s" not in figures:
        return
    seconds, megabytes, incremental = SYNC_TARGETS
    first_ok = figures["first sync s"] < seconds and figures["first sync peak MB"] < megabytes
    print(
        f"at 1,000,000: first sync {figures['first sync s']:.1f} s, peak RSS "
        f"{figures['first sync peak MB']:.0f} MB [target < {seconds:g} s and < {megabytes:g} MB: "
        f"{verdict(first_ok)}]; incremental {figures['incremental sync ms']:.0f} ms "
        f"[target < {incremental * 1e3:g} ms: {verdict(figures['incremental sync ms'] < 100)}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(PARTS),
        default=sorted(PARTS),
        help="Which figures to take (default: all). 'prune' fills a cache and prunes it; "
        "'sync' syncs from an archive started here.",
    )
    args = parser.parse_args()
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    parts = set(args.only)
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="koa_scale_") as tmp, contextlib.ExitStack() as stack:
        archive = stack.enter_context(SyncArchive(Path(tmp))) if "sync" in parts else None
        for n in args.sizes:
            results[n] = measure(Path(tmp), n, parts) if parts & {"local", "prune"} else {}
            if archive is not None:
                results[n].update(archive.measure(n))
            line = " | ".join(f"{k} {v:.4g}" for k, v in results[n].items())
            print(f"N={n:>9,}: {line}", flush=True)
    sizes = list(results)
    for small, large in zip(sizes, sizes[1:], strict=False):
        growth = " | ".join(
            f"{k} x{results[large][k] / results[small][k]:.2f}" for k in results[large]
        )
        print(f"{small:,} -> {large:,} (N x{large / small:.0f}): {growth}")
    status_verdict(results)
    sync_verdicts(results)


if __name__ == "__main__":
    main()

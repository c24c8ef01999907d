"""Benchmark of the archive client: sync, incremental sync, prefetch, one large download.

Run: ``python bench/sync.py`` (``--records 10000 --files 50 --big-mb 100`` for a
shorter run).

Against a local ``koa-archive`` on SQLite (started here, protocol 2) it prints:

- the first ``store.sync_records_from_remote()`` of N records (default 100,000),
  seconds and the client process's peak RSS;
- an incremental sync that brings 100 new records on top of those, in ms;
- the same against a second server over the same archive that speaks only
  protocol 1 (``koa-archive serve --protocol 1``, whole JSON lists, as the Keck
  service): the first sync (seconds, peak RSS) and a ``mode='id'`` sync of 100
  new records. Beside the first sync, its floor, measured in the same run in a
  bare process: one GET of the whole list, ``json`` parse, and a plain
  ``sqlite3`` ``executemany`` of the same rows into a WAL table with the same
  columns and indexes (same pragmas as the store's), in one transaction; and
  the ratio of the two (best of ``--rounds`` rounds each, alternating). The
  client's peak RSS is compared with its RSS before the sync plus what the
  parsed records take in that bare process, plus 20 MiB;
- ``store.prefetch`` of F files of 1 MB (default 500) with ``workers=8`` next to
  ``workers=1`` (best of two rounds each);
- one ``store.get_calibration`` of a large file (default 1 GiB, MD5 checked)
  next to ``curl`` fetching the same file from the archive, in the same run.

Each client measurement runs in a fresh Python process, so its peak RSS is
the client's own (``VmHWM``: ``ru_maxrss`` keeps the resident size of the
process that started it, when that was larger). The archive runs in its own
process too. Before the file measurements, memory is warmed
(``bench/machine.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from machine import warm_memory  # noqa: E402

from koa_middleware.client.remote_database import RemoteCalibrationDB  # noqa: E402
from support.archive import ArchiveServer, create_token  # noqa: E402

INSTRUMENT = "hispec"
CAL_TYPES = ("dark", "flat", "arc", "bias")


def make_record(index: int, **fields) -> dict:
    """A record laid out like a real instrument's (13 fields)."""
    record = {
        "id": str(uuid.uuid4()),
        "filename": f"hispec_{CAL_TYPES[index % 4]}_{index:07d}_{uuid.uuid4().hex[:4]}.fits",
        "cal_type": CAL_TYPES[index % 4],
        "datetime_obs": (
            f"2024-{1 + index % 12:02d}-{1 + index % 28:02d}T{index % 24:02d}:00:00.000"
        ),
        "origin": "KECK",
        "cal_version": "001",
        "file_md5": hashlib.md5(str(index).encode()).hexdigest(),
        "file_size": 1024 + index,
        "spectrograph": ("red", "blue")[(index // 4) % 2],
        "instrument_era": str((index // 8) % 2),
        "master_cal": 1,
        "mjd_start": 60310.0 + index / 24,
    }
    record.update(fields)
    return record


# The client side of each measurement, run in a fresh process: prints one JSON line.
CLIENT = r"""
import json, os, resource, sys, time
import psutil
from koa_middleware.store import CalibrationStore

task, cache = sys.argv[1], sys.argv[2]
store = CalibrationStore(instrument_name="hispec", cache_dir=cache, sync_on_init=False)
out = {"rss_before_mb": psutil.Process().memory_info().rss / 2**20}
if task == "sync":
    start, cpu = time.perf_counter(), time.process_time()
    added = store.sync_records_from_remote()
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = time.process_time() - cpu
    out["added"] = len(added)
elif task == "prefetch":
    store.sync_records_from_remote()
    ids = json.loads(sys.argv[3])
    workers = int(sys.argv[4])
    server = psutil.Process(int(sys.argv[5]))
    cpu, server_cpu = os.times(), server.cpu_times()
    start = time.perf_counter()
    paths = store.prefetch(ids, workers=workers)
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = sum(os.times()[:2]) - sum(cpu[:2])
    out["server_cpu_seconds"] = sum(server.cpu_times()[:2]) - sum(server_cpu[:2])
    out["files"] = len(paths)
elif task == "get":
    store.sync_records_from_remote(cals=[sys.argv[3]])
    start = time.perf_counter()
    path, record = store.get_calibration(sys.argv[3])
    out["seconds"] = time.perf_counter() - start
    out["path"] = path
# The peak of this process's own memory: Linux's VmHWM. ru_maxrss would also hold the
# resident size of the process that started this one, carried over its exec.
try:
    with open("/proc/self/status") as status:
        hwm = [line.split()[1] for line in status if line.startswith("VmHWM:")]
    out["peak_rss_mb"] = int(hwm[0]) / 1024
except (OSError, IndexError, ValueError):
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
store.close()
print(json.dumps(out))
"""


# The floor of a v1 first sync, in a bare process: GET, parse, plain executemany.
FLOOR = r"""
import json, os, sqlite3, sys, time
import httpx, psutil

url, token, path = sys.argv[1], sys.argv[2], sys.argv[3]
process = psutil.Process()
start = time.perf_counter()
body = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=300).content
rss_text = process.memory_info().rss
records = json.loads(body)
fetched = time.perf_counter() - start
held = (process.memory_info().rss - rss_text) / 2**20
del body
conn = sqlite3.connect(path, isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("PRAGMA synchronous = NORMAL")  # as the store's connection
conn.execute("PRAGMA cache_size = -65536")
types = {"file_size": "INTEGER", "master_cal": "INTEGER", "mjd_start": "REAL"}
names = list(records[0])
columns = ", ".join(
    f"{name} {types.get(name, 'TEXT')}{' PRIMARY KEY' if name == 'id' else ''}" for name in names
)
conn.execute(f"CREATE TABLE cal ({columns})")
conn.execute("CREATE UNIQUE INDEX ux_filename ON cal (filename)")
for name in ("cal_type", "datetime_obs", "last_updated", "origin"):
    conn.execute(f"CREATE INDEX ix_{name} ON cal ({name})")
start = time.perf_counter()
conn.execute("BEGIN IMMEDIATE")
conn.executemany(
    f"INSERT INTO cal ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
    [tuple(record.values()) for record in records],
)
conn.execute("COMMIT")
inserted = time.perf_counter() - start
conn.close()
print(json.dumps({"fetch_parse": fetched, "insert": inserted, "held_mb": held}))
"""


def run_floor(base_url: str, token: str, path: Path) -> dict:
    url = f"{base_url}/{INSTRUMENT}/query"
    result = subprocess.run(
        [sys.executable, "-c", FLOOR, url, token, str(path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"floor failed:\n{result.stderr}")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_client(env: dict, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, *args], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"client {args[0]} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def load_records(remote: RemoteCalibrationDB, count: int, start: int = 0) -> None:
    batch = []
    for index in range(start, start + count):
        batch.append(make_record(index))
        if len(batch) == 5000:
            remote.add(batch)
            batch = []
    if batch:
        remote.add(batch)


def publish_files(remote: RemoteCalibrationDB, folder: Path, count: int, size: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        data = os.urandom(size)
        record = make_record(10_000_000 + index, file_md5=hashlib.md5(data).hexdigest())
        record["file_size"] = size
        path = folder / record["filename"]
        path.write_bytes(data)
        remote.upload_calibration_file(record["id"], path, record["file_md5"])
        path.unlink()
        records.append(record)
    remote.add(records)
    return [r["id"] for r in records]


def publish_big(remote: RemoteCalibrationDB, folder: Path, size: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hispec_big.fits"
    md5 = hashlib.md5()
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for index in range(size >> 20):
            chunk = block[index % 256 :] + block[: index % 256]
            handle.write(chunk)
            md5.update(chunk)
    record = make_record(20_000_000, filename=path.name, file_md5=md5.hexdigest())
    record["file_size"] = path.stat().st_size
    remote.upload_calibration_file(record["id"], path, record["file_md5"])
    remote.add(record)
    path.unlink()
    return record


def bare_gets(remote: RemoteCalibrationDB, ids: list[str], threads: int) -> float:
    """Seconds to GET every file with ``threads`` threads, dropping the bytes."""
    from concurrent.futures import ThreadPoolExecutor

    def get(cal_id: str) -> None:
        with remote.open_file_stream(cal_id) as response:
            for _ in response.iter_raw():
                pass

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(get, ids))
    return time.perf_counter() - start


def md5_ceiling(megabytes: int = 512) -> float:
    """MB/s of hashlib's MD5 over data in memory: no checked download can be faster."""
    block = os.urandom(1 << 20)
    md5 = hashlib.md5()
    start = time.perf_counter()
    for _ in range(megabytes):
        md5.update(block)
    return megabytes / (time.perf_counter() - start)


def curl_seconds(url: str, token: str, out: Path) -> float:
    argv = ["curl", "-sS", "-f", "-H", f"Authorization: Bearer {token}", "-o", str(out), url]
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    seconds = time.perf_counter() - start
    out.unlink()
    return seconds


def curl_md5_seconds(url: str, token: str) -> float:
    """Seconds for curl to fetch ``url`` into ``md5sum`` (an MD5-checked download by curl)."""
    argv = ["curl", "-sS", "-f", "-H", f"Authorization: Bearer {token}", url]
    start = time.perf_counter()
    fetch = subprocess.Popen(argv, stdout=subprocess.PIPE)
    subprocess.run(["md5sum"], stdin=fetch.stdout, check=True, stdout=subprocess.DEVNULL)
    fetch.stdout.close()
    if fetch.wait() != 0:
        raise RuntimeError(f"curl failed on {url}")
    return time.perf_counter() - start


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def v1_figures(
    remote: RemoteCalibrationDB, env: dict, archive_root: Path, work: Path, options
) -> None:
    """First and ``mode='id'`` incremental sync from a server that speaks only protocol 1."""
    with ArchiveServer(archive_root, protocol=1, instruments=(INSTRUMENT,)) as v1:
        env1 = dict(env, KOA_CALIBRATIONS_URL=v1.base_url)
        cache = work / "cache-sync-v1"
        syncs, floors = [], []
        for round_ in range(options.rounds):  # alternating, so both see the same machine
            floors.append(run_floor(v1.base_url, env["KOA_API_TOKEN"], work / "floor.sqlite"))
            if round_:
                shutil.rmtree(cache)
            syncs.append(run_client(env1, "sync", str(cache)))
        first = min(syncs, key=lambda run: run["seconds"])
        floor = min(floors, key=lambda run: run["fetch_parse"] + run["insert"])
        floor_s = floor["fetch_parse"] + floor["insert"]
        ratio = first["seconds"] / floor_s
        print(
            f"v1 first sync of {first['added']} records: {first['seconds']:.2f} s; its floor "
            f"{floor_s:.2f} s (GET + json parse {floor['fetch_parse']:.2f} s, plain executemany "
            f"{floor['insert']:.2f} s); ratio {ratio:.2f}   "
            f"[target <= 1.5: {verdict(ratio <= 1.5)}]"
        )
        print(
            "  (each of "
            f"{options.rounds} rounds: sync "
            + ", ".join(f"{run['seconds']:.2f}" for run in syncs)
            + " s; floor "
            + ", ".join(f"{run['fetch_parse'] + run['insert']:.2f}" for run in floors)
            + " s)"
        )
        held = min(run["held_mb"] for run in floors)
        limit = first["rss_before_mb"] + held + 20
        peak = max(run["peak_rss_mb"] for run in syncs)
        print(
            f"v1 first sync client peak RSS {peak:.0f} MB; before the sync "
            f"{first['rss_before_mb']:.0f} MB, the parsed records in a bare process "
            f"{held:.0f} MB, limit {limit:.0f} MB   [target <= limit: {verdict(peak <= limit)}]"
        )
        start = options.records + options.new
        load_records(remote, options.new, start=start)
        again = run_client(env1, "sync", str(cache))
        print(
            f"v1 mode='id' sync of {again['added']} new records on top: "
            f"{again['seconds'] * 1000:.0f} ms, client peak RSS {again['peak_rss_mb']:.0f} MB   "
            f"[target < 1 s: {verdict(again['seconds'] < 1)}]"
        )
        bare = bare_list_seconds(v1.base_url, env["KOA_API_TOKEN"])
        print(
            f"  (the v1 server alone, one GET of the whole list read and dropped: {bare:.2f} s; "
            "no v1 sync can be faster)"
        )


def bare_list_seconds(base_url: str, token: str) -> float:
    """Seconds the v1 server takes to send its whole list (read and dropped)."""
    import httpx

    start = time.perf_counter()
    with httpx.stream(
        "GET",
        f"{base_url}/{INSTRUMENT}/query",
        headers={"Authorization": f"Bearer {token}"},
        timeout=300,
    ) as response:
        for _ in response.iter_raw():
            pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--file-mb", type=float, default=1.0)
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--no-v1", action="store_true", help="Skip the figures against a protocol-1 server."
    )
    parser.add_argument(
        "--v1-only", action="store_true", help="Only the figures against a protocol-1 server."
    )
    parser.add_argument("--rounds", type=int, default=2, help="Rounds of v1 sync and floor.")
    options = parser.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))

    work = Path(options.workdir or tempfile.mkdtemp(prefix="koa-bench-sync-"))
    work.mkdir(parents=True, exist_ok=True)
    archive_root = work / "archive"
    token = create_token(archive_root, "write")
    env = dict(os.environ, KOA_API_TOKEN=token, KOA_PROGRESS="0")
    for name in ("KECK_OBSERVER_EMAIL", "KECK_OBSERVER_PASSWORD", "KOA_CALIBRATION_CACHE"):
        env.pop(name, None)
    try:
        with ArchiveServer(archive_root, instruments=(INSTRUMENT,)) as server:
            env["KOA_CALIBRATIONS_URL"] = server.base_url
            print(f"archive: {server.base_url} (SQLite catalog in {archive_root})")
            with RemoteCalibrationDB(INSTRUMENT, url=server.base_url, token=token) as remote:
                start = time.perf_counter()
                load_records(remote, options.records)
                print(
                    f"loaded {options.records} records into the archive in "
                    f"{time.perf_counter() - start:.1f} s"
                )

                if not options.v1_only:
                    cache = work / "cache-sync"
                    first = run_client(env, "sync", str(cache))
                    print(
                        f"first sync of {first['added']} records: {first['seconds']:.2f} s, "
                        f"client peak RSS {first['peak_rss_mb']:.0f} MB   "
                        f"[target < 8 s and < 200 MB: "
                        f"{verdict(first['seconds'] < 8 and first['peak_rss_mb'] < 200)}]"
                    )

                    load_records(remote, options.new, start=options.records)
                    again = run_client(env, "sync", str(cache))
                    print(
                        f"incremental sync of {again['added']} new records on top: "
                        f"{again['seconds'] * 1000:.0f} ms   "
                        f"[target < 100 ms: {verdict(again['seconds'] < 0.1)}]"
                    )

                if not options.no_v1:
                    v1_figures(remote, env, archive_root, work, options)

                if options.files and not options.v1_only:
                    size = int(options.file_mb * (1 << 20))
                    ids = publish_files(remote, work / "upload", options.files, size)
                    warm_memory(work / "scratch", 2 * options.files * size)
                    runs: dict[int, list[dict]] = {1: [], 8: []}
                    for _ in range(2):  # two rounds, alternating, like the large download
                        for workers in (1, 8):
                            runs[workers].append(
                                run_client(
                                    env,
                                    "prefetch",
                                    str(work / f"cache-w{workers}"),
                                    json.dumps(ids),
                                    str(workers),
                                    str(server.process.pid),
                                )
                            )
                            shutil.rmtree(work / f"cache-w{workers}")
                    one, eight = (min(runs[n], key=lambda run: run["seconds"]) for n in (1, 8))
                    speedup = one["seconds"] / eight["seconds"]
                    print(
                        f"prefetch of {options.files} files of {options.file_mb:g} MB: "
                        f"workers=1 {one['seconds']:.2f} s, workers=8 {eight['seconds']:.2f} s, "
                        f"{speedup:.2f}x   [target >= 2x: {verdict(speedup >= 2)}]"
                    )
                    print(
                        "  (each of 2 rounds: workers=1 "
                        + ", ".join(f"{run['seconds']:.2f}" for run in runs[1])
                        + " s; workers=8 "
                        + ", ".join(f"{run['seconds']:.2f}" for run in runs[8])
                        + " s)"
                    )
                    busy = one["cpu_seconds"] + one["server_cpu_seconds"]
                    busy8 = eight["cpu_seconds"] + eight["server_cpu_seconds"]
                    cores = os.cpu_count() or 1
                    print(
                        f"  (workers=1 kept {busy / one['seconds']:.2f} cores busy: client "
                        f"{one['cpu_seconds']:.2f} s + archive {one['server_cpu_seconds']:.2f} s "
                        f"of CPU in {one['seconds']:.2f} s; spread over this machine's {cores} "
                        f"cores, the same work takes at least {busy / cores:.2f} s, a gain of "
                        f"at most {cores * one['seconds'] / busy:.2f}x)"
                    )
                    print(
                        f"  (workers=8 used client {eight['cpu_seconds']:.2f} s + archive "
                        f"{eight['server_cpu_seconds']:.2f} s of CPU, which needs at least "
                        f"{busy8 / cores:.2f} s on {cores} cores, a gain of at most "
                        f"{cores * one['seconds'] / busy8:.2f}x; it took {eight['seconds']:.2f} s, "
                        f"keeping {busy8 / eight['seconds']:.2f} of {cores} cores busy)"
                    )
                    bare = {n: bare_gets(remote, ids, n) for n in (1, 8)}
                    print(
                        f"  (the archive alone, bare GETs of the same files read and dropped: "
                        f"1 thread {bare[1]:.2f} s, 8 threads {bare[8]:.2f} s; no client can "
                        f"prefetch faster than {bare[8]:.2f} s)"
                    )

                if options.big_mb and not options.v1_only:
                    big = publish_big(remote, work / "upload", options.big_mb << 20)
                    warm_memory(work / "scratch", 2 * (options.big_mb << 20))
                    url = f"{server.base_url}/{INSTRUMENT}/files/{big['id']}"
                    ours, curls, curl_md5s = [], [], []
                    for round_ in range(2):
                        curls.append(curl_seconds(url, token, work / "curl.out"))
                        curl_md5s.append(curl_md5_seconds(url, token))
                        cache = work / f"cache-big{round_}"
                        result = run_client(env, "get", str(cache), big["id"])
                        ours.append(result["seconds"])
                        shutil.rmtree(cache)
                    megabytes = big["file_size"] / (1 << 20)
                    md5_rate = md5_ceiling()
                    curl_rate, our_rate = megabytes / min(curls), megabytes / min(ours)
                    ratio = our_rate / curl_rate
                    print(
                        f"get_calibration of {megabytes:.0f} MB (MD5 checked): "
                        f"{min(ours):.2f} s = {our_rate:.0f} MB/s; curl {min(curls):.2f} s = "
                        f"{curl_rate:.0f} MB/s; ratio {ratio:.2f}   "
                        f"[target >= 0.7: {verdict(ratio >= 0.7)}]"
                    )
                    curl_md5_rate = megabytes / min(curl_md5s)
                    print(
                        f"  next to curl | md5sum ({min(curl_md5s):.2f} s = {curl_md5_rate:.0f} "
                        f"MB/s), an MD5-checked download by curl: ratio "
                        f"{our_rate / curl_md5_rate:.2f}"
                    )
                    print(
                        f"  (each of 2 rounds: ours {', '.join(f'{s:.2f}' for s in ours)} s; "
                        f"curl {', '.join(f'{s:.2f}' for s in curls)} s; hashlib MD5 alone "
                        f"on this machine: {md5_rate:.0f} MB/s, the ceiling of any MD5-checked "
                        f"download, {md5_rate / curl_rate:.2f} of curl's rate)"
                    )
    finally:
        if options.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark of the local calibration store.

Run: ``python bench/local.py`` (``--sizes 1000 10000`` for a shorter run).

For caches of N records laid out like a real instrument's (record i observed
at 2024-01-01T00:00 + i hours, cal_type cycling dark/flat/arc/bias,
spectrograph by (i // 4) % 2, instrument_era by (i // 8) % 2, master_cal 1, a
1 KiB file each) it prints:

- the time per ``register_calibration`` over the first and last 10% of 10,000
  registrations;
- ``store.local_db.add`` of N records in one call, beside its floor: a plain
  ``sqlite3`` ``executemany`` of the same rows (tuples built beforehand) into a
  WAL table with the same columns and indexes (same pragmas as the store's),
  in one transaction. The two take turns, three rounds each, every one after
  ``os.sync()`` so that none pays for writing out the last one's pages; the
  best of each, every round and the ratio are printed. The first add fills the
  store the rest of the bench uses, the others empty stores of their own. As
  the add makes an empty table's indexes after its rows, the plain
  ``executemany`` done that way is printed too, with the add's ratio to it;
- p50 and p95 of ``select_and_get_calibration`` with a dark selector;
- p50 of ``get_calibration(id)`` of a cached file;
- the same selection p50 with 10% of the records retracted (the archive's
  retractions, as a sync stores them);
- 1,000 selections recorded into a run manifest, then the time per selection
  when a store replays the manifest, next to selecting;
- the time to open the store (median of 50 opens, import excluded) and of the
  first selection after opening, also in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from koa_middleware import CalibrationSelector, CalibrationStore
from koa_middleware.hashing import file_digest

START = datetime(2024, 1, 1)
MJD_OF_START = 60310.0  # MJD of 2024-01-01T00:00
PAYLOAD = b"\0" * 1024
SELECT_SQL = (
    "cal_type = :cal_type AND instrument_era = :era AND spectrograph = :spec AND master_cal = 1"
)


class DarkSelector(CalibrationSelector):
    """Nearest master dark of the frame's era and spectrograph."""

    def get_candidates(self, input, db, **kwargs):
        params = {"cal_type": "dark", "era": input["era"], "spec": input["spec"]}
        params["mjd"] = input["mjd"]
        return db.table.rows_where(SELECT_SQL, params, order_by="ABS(mjd_start - :mjd)", limit=1)


class BenchModel:
    """A 1 KiB calibration file and its record."""

    def __init__(self, record: dict):
        self.record = record

    def to_record(self) -> dict:
        return self.record

    def save(self, output_dir=None, output_path=None) -> str:
        path = output_path or os.path.join(output_dir, self.record["filename"])
        with open(path, "wb") as handle:
            handle.write(PAYLOAD)
        return path


def layout_record(i: int) -> dict:
    when = START + timedelta(hours=i)
    return {
        "filename": f"cal_{i:07d}.fits",
        "cal_type": ("dark", "flat", "arc", "bias")[i % 4],
        "datetime_obs": when.isoformat(timespec="milliseconds"),
        "mjd_start": MJD_OF_START + i / 24,
        "spectrograph": ("spec_a", "spec_b")[(i // 4) % 2],
        "instrument_era": ("era1", "era2")[(i // 8) % 2],
        "master_cal": 1,
    }


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_register(root: Path, count: int = 10_000) -> None:
    with CalibrationStore("hispec", str(root / "register"), connect_remote=False) as store:
        times = []
        for i in range(count):
            model = BenchModel(layout_record(i))
            t0 = time.perf_counter()
            store.register_calibration(model)
            times.append(time.perf_counter() - t0)
    tenth = count // 10
    first = statistics.mean(times[:tenth]) * 1e3
    last = statistics.mean(times[-tenth:]) * 1e3
    print(
        f"register_calibration x{count}: first 10% {first:.3f} ms/call, "
        f"last 10% {last:.3f} ms/call, ratio {last / first:.2f}"
    )


def cached_records(store: CalibrationStore, n: int, md5: str, size: int) -> list[dict]:
    """``n`` records laid out like an instrument's, each with its file written into the cache."""
    records = []
    for i in range(n):
        record = layout_record(i)
        record.update(
            id=str(uuid.uuid4()),
            origin="KECK",
            cal_version="001",
            last_updated=record["datetime_obs"],
            file_md5=md5,
            file_size=size,
        )
        records.append(record)
        (store.layout.calibrations_dir / record["filename"]).write_bytes(PAYLOAD)
    return records


def bench_size(root: Path, n: int, lookups: int) -> None:
    cache = root / f"n{n}"
    with CalibrationStore("hispec", str(cache), connect_remote=False) as store:
        md5, size = file_digest_of_payload(root)
        records = cached_records(store, n, md5, size)
        add_s = bench_bulk_add(root, n, store, records)

        selector = DarkSelector()
        select_times = time_selections(store, selector, n, lookups)
        get_times = []
        for k in range(lookups):
            cal_id = records[(k * 104729) % n]["id"]
            t0 = time.perf_counter()
            store.get_calibration(cal_id)
            get_times.append(time.perf_counter() - t0)
        store.local_db.set_retractions(
            {r["id"]: ("2024-06-01T00:00:00.000", "bench") for r in records[::10]}, pushed=True
        )
        retracted_times = time_selections(store, selector, n, lookups)
        manifest = root / f"run{n}.json"
        with store.record_manifest(manifest):
            selecting = time_selections(store, selector, n, 1_000)
    with CalibrationStore("hispec", str(cache), connect_remote=False, manifest=manifest) as replay:
        replaying = time_selections(replay, selector, n, 1_000)
    print(
        f"N={n:>7,}: local_db.add of N records {add_s:.3f} s | "
        f"select_and_get_calibration p50 {percentile(select_times, 0.5) * 1e3:.3f} ms "
        f"p95 {percentile(select_times, 0.95) * 1e3:.3f} ms | "
        f"get_calibration(id) p50 {percentile(get_times, 0.5) * 1e3:.4f} ms"
    )
    print(
        f"N={n:>7,}: 10% retracted: select_and_get_calibration p50 "
        f"{percentile(retracted_times, 0.5) * 1e3:.3f} ms | 1,000 selections: recording "
        f"{sum(selecting):.3f} s, replaying the manifest {sum(replaying):.3f} s "
        f"(p50 {percentile(selecting, 0.5) * 1e3:.3f} vs {percentile(replaying, 0.5) * 1e3:.3f} ms)"
    )
    bench_open(cache, n)


def bench_open(cache: Path, n: int, opens: int = 50) -> None:
    """Open time of a warm cache (import excluded), and the first selection after opening.

    Each of ``opens`` rounds opens the store, makes one selection and closes it;
    the median open and the median first selection are printed, and also those
    of a fresh process (one open each: its first open pays what a process pays once).
    """
    selector = DarkSelector()
    open_times, first_times = [], []
    for k in range(opens):
        t0 = time.perf_counter()
        store = CalibrationStore("hispec", str(cache), connect_remote=False)
        open_times.append(time.perf_counter() - t0)
        try:
            first_times.extend(time_selections(store, selector, n, 1, start=k))
        finally:
            store.close()
    fresh = [fresh_process_open(cache, n) for _ in range(5)]
    print(
        f"N={n:>7,}: open (median of {opens}, import excluded) "
        f"{statistics.median(open_times) * 1e3:.2f} ms | first select_and_get_calibration "
        f"after opening p50 {statistics.median(first_times) * 1e3:.3f} ms | in a fresh "
        f"process (median of {len(fresh)}): open {statistics.median(f[0] for f in fresh):.2f} "
        f"ms, first select {statistics.median(f[1] for f in fresh):.3f} ms"
    )


def fresh_process_open(cache: Path, n: int) -> tuple[float, float]:
    """Milliseconds of the first open and first selection of a new process (import excluded)."""
    code = (
        "import sys, time\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        f"import {Path(__file__).stem} as local\n"
        "import koa_middleware.cli\n"
        "t0 = time.perf_counter()\n"
        f"store = local.CalibrationStore('hispec', {str(cache)!r}, connect_remote=False)\n"
        "t1 = time.perf_counter()\n"
        f"[s] = local.time_selections(store, local.DarkSelector(), {n}, 1)\n"
        "store.close()\n"
        "print((t1 - t0) * 1e3, s * 1e3)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    opened, selected = out.split()
    return float(opened), float(selected)


#: Rounds of the bulk add and of its floor, in turns; the best of each is compared.
ROUNDS = 3


def bench_bulk_add(root: Path, n: int, store: CalibrationStore, records: list[dict]) -> float:
    """Seconds of ``store.local_db.add(records)`` beside its floor; prints both and the ratio.

    Floor and add take turns, ``ROUNDS`` of each, and each starts after
    ``os.sync()``: the pages a write leaves are written out before the next is
    timed, not during it. The first add fills ``store``; the others fill empty
    stores of their own. The best of each is compared, as ``timeit`` does.
    """
    floors, adds = [], []
    for k in range(ROUNDS):
        os.sync()
        floors.append(plain_executemany(root / f"floor{n}-{k}.sqlite", records))
        os.sync()
        if k == 0:
            adds.append(timed_add(store, records))
            continue
        with CalibrationStore("hispec", str(root / f"add{n}-{k}"), connect_remote=False) as other:
            adds.append(timed_add(other, records))
    add_s, floor = min(adds), min(floors)
    rounds = ", ".join(f"{a:.3f}/{f:.3f}" for a, f in zip(adds, floors, strict=True))
    print(
        f"N={n:>7,}: local_db.add of N records {add_s:.3f} s; plain executemany of the "
        f"same rows {floor:.3f} s (best of {ROUNDS}; add/floor by round: {rounds}); ratio "
        f"{add_s / floor:.2f}   [target <= 1.3: {'ok' if add_s <= 1.3 * floor else 'MISSED'}]"
    )
    # The add builds the indexes of an empty table after its rows (database/bulk_load.py):
    # the same plain executemany, done that way, is its floor too.
    os.sync()
    after = plain_executemany(root / f"floor{n}-after.sqlite", records, indexes_after=True)
    print(
        f"N={n:>7,}: plain executemany of the same rows with the indexes made after them "
        f"{after:.3f} s; ratio of the add to it {add_s / after:.2f}"
    )
    return add_s


def timed_add(store: CalibrationStore, records: list[dict]) -> float:
    t0 = time.perf_counter()
    stored = store.local_db.add(records)
    seconds = time.perf_counter() - t0
    del stored  # the caller's to keep or drop, after the add; the floor keeps its rows too
    return seconds


def plain_executemany(path: Path, records: list[dict], indexes_after: bool = False) -> float:
    """Seconds of one plain ``executemany`` of ``records`` into a table like the store's.

    With ``indexes_after``, the indexes are made after the rows, in the same
    transaction, and timed with them.
    """
    from koa_middleware.database.local_database import BASE_COLUMNS, INDEXED_COLUMNS
    from koa_middleware.sqlite_wal import connect

    conn = connect(path)  # WAL, synchronous=NORMAL and the cache size of the store
    names = list(BASE_COLUMNS) + [name for name in records[0] if name not in BASE_COLUMNS]
    kinds = {"mjd_start": "REAL", "master_cal": "INTEGER"}
    columns = ", ".join(
        f"{name} {BASE_COLUMNS.get(name) or kinds.get(name, 'TEXT')}"
        + (" PRIMARY KEY" if name == "id" else "")
        for name in names
    )
    conn.execute(f"CREATE TABLE cal ({columns})")
    indexes = ["CREATE UNIQUE INDEX ux_filename ON cal (filename)"]
    indexes += [f"CREATE INDEX ix_{name} ON cal ({name})" for name in INDEXED_COLUMNS]
    for sql in () if indexes_after else indexes:
        conn.execute(sql)
    order = list(records[0])
    rows = [tuple(record.values()) for record in records]
    # The names are the bench's own fields.
    sql = f"INSERT INTO cal ({', '.join(order)}) VALUES ({', '.join('?' for _ in order)})"  # noqa: S608
    t0 = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(sql, rows)
    for index_sql in indexes if indexes_after else ():
        conn.execute(index_sql)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - t0
    conn.close()
    return seconds


def time_selections(store, selector, n: int, lookups: int, start: int = 0) -> list[float]:
    """Seconds per ``select_and_get_calibration`` over ``lookups`` frames spread over the cache."""
    times = []
    for k in range(start, start + lookups):
        i = (k * 7919) % n
        frame = {
            "filename": f"frame_{k:06d}.fits",
            "era": ("era1", "era2")[(i // 8) % 2],
            "spec": ("spec_a", "spec_b")[(i // 4) % 2],
            "mjd": MJD_OF_START + i / 24 + 0.3,
        }
        t0 = time.perf_counter()
        path, record = store.select_and_get_calibration(frame, selector)
        times.append(time.perf_counter() - t0)
        assert record["cal_type"] == "dark" and os.path.isfile(path)
    return times


def file_digest_of_payload(root: Path) -> tuple[str, int]:
    probe = root / "payload"
    probe.write_bytes(PAYLOAD)
    return file_digest(probe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--registrations", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    args = parser.parse_args()
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    with tempfile.TemporaryDirectory(prefix="koa_bench_") as tmp:
        root = Path(tmp)
        bench_register(root, args.registrations)
        for n in args.sizes:
            bench_size(root, n, args.lookups)


if __name__ == "__main__":
    main()

"""The archive at scale: per-request figures at each catalog size, side by side.

Run from ``bench/archive.py --sizes 100000,1000000`` (SQLite) or with
``--db postgresql://...`` (a database of its own is created on that server for
the run and dropped afterwards).

For each size N a catalog of its own is filled with N records through the
catalog's own bulk path (:meth:`Catalog.add`, batches of 10,000, no HTTP) and a
server started on it; all servers run at once and are measured in turns (two
rounds, each figure its best round, so that other work on a shared machine
weighs on every size alike), through real HTTP on loopback:

- ``query?cal_id=``: one keep-alive client, p50 over 200 random ids (the lowest of
  three rounds); then 32 concurrent keep-alive clients (requests/s and p99), as
  ``bench/archive.py``;
- ``lastUpdated``: p50 of 100 requests (the lowest of three rounds);
- ``query?cal_type=dark`` paged with ``limit``/``offset`` as ``RemoteCalibrationDB``
  pages it (3,000 per page): time of the first page, the last page and the mean
  page, and the whole type (a third of the catalog) in microseconds per record;
- ``changes``: a page of 1,000 at the start, the middle and the end of the feed;
- ``add`` of 10,000 new records in 10 requests of 1,000: seconds per request.

Target: no figure at the largest size more than 2x its value at the smallest
(the whole-type figure per record, so that a 10x larger type may take 10x longer).
"""

from __future__ import annotations

import logging
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa
from archive_common import bench_query, make_token, start_server

from koa_middleware.archive.catalog import Catalog

logger = logging.getLogger(__name__)

INSTRUMENT = "hispec"
CAL_TYPES = ("dark", "flat", "arc")
#: Records per Catalog.add while filling (the largest add the server takes).
FILL_BATCH = 10_000
#: Records per page of query, as RemoteCalibrationDB pages it.
QUERY_PAGE = 3000
CHANGES_PAGE = 1000
ADD_RECORDS, ADD_BATCH = 10_000, 1000
#: Bench database created on the PostgreSQL server given with --db, dropped afterwards.
BENCH_DATABASE = "koa_bench_archive_scale"


def make_record(index: int) -> dict:
    """A valid record, as ``records.validate_record`` leaves it (no server fields)."""
    return {
        "id": str(uuid.uuid4()),
        "filename": f"cal_{index:08d}.fits",
        "cal_type": CAL_TYPES[index % 3],
        "datetime_obs": f"2024-{1 + index % 12:02d}-{1 + index % 28:02d}T00:00:00.000",
        "origin": "KECK",
        "cal_version": "001",
        "spectrograph": ("red", "blue")[index % 2],
        "mjd_start": 60310.0 + index / 1000,
        "file_md5": "0" * 32,
        "file_size": 1000,
    }


def fill(catalog: Catalog, start: int, stop: int) -> float:
    """Add records ``start``..``stop`` through ``Catalog.add``; return the seconds.

    On PostgreSQL the table's statistics are gathered (``ANALYZE``) after the first
    batch and at the end, as autovacuum would after a bulk load: without them the
    planner takes a table it has never measured for a small one, and looks ids up by
    scanning the instrument's rows.
    """
    started = time.perf_counter()
    for first in range(start, stop, FILL_BATCH):
        catalog.add(
            INSTRUMENT, [make_record(i) for i in range(first, min(first + FILL_BATCH, stop))]
        )
        if first == start or first + FILL_BATCH >= stop:
            analyze(catalog)
    return time.perf_counter() - started


def analyze(catalog: Catalog) -> None:
    """Gather the PostgreSQL planner's statistics of the catalog's tables (nothing on SQLite)."""
    if catalog.is_postgres:
        with catalog.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


@contextmanager
def bench_databases(db_url: str | None, sizes: list[int]) -> Iterator[list[str | None]]:
    """Yield a catalog URL per size: None (SQLite) or fresh databases on ``db_url``'s server."""
    if not db_url:
        yield [None for _ in sizes]
        return
    url = sa.engine.make_url(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    names = [f"{BENCH_DATABASE}_{size}" for size in sizes]
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
        yield [url.set(database=name).render_as_string(hide_password=False) for name in names]
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def _ms(seconds: float) -> float:
    return seconds * 1000


def timed_get(client: httpx.Client, path: str, params: dict) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.get(path, params=params, timeout=600)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response


def measure_lookups(client: httpx.Client, ids: list[str]) -> dict[str, float]:
    """``query?cal_id=`` and ``lastUpdated`` p50, one request at a time.

    The lowest p50 of three rounds, so that a burst of other work on a shared
    machine does not pass for a slower catalog.
    """
    by_id, newest = [], []
    for _ in range(3):
        sample = random.sample(ids, min(200, len(ids)))
        by_id.append(
            statistics.median(
                timed_get(client, f"{INSTRUMENT}/query", {"cal_id": i})[0] for i in sample
            )
        )
        newest.append(
            statistics.median(
                timed_get(client, f"{INSTRUMENT}/lastUpdated", {})[0] for _ in range(100)
            )
        )
    return {
        "query?cal_id= p50 (ms, one client)": _ms(min(by_id)),
        "lastUpdated p50 (ms)": _ms(min(newest)),
    }


def measure_type_pages(client: httpx.Client, expected: int) -> dict[str, float]:
    """Page ``query?cal_type=dark`` with limit/offset to its end."""
    pages: list[float] = []
    seen = 0
    started = time.perf_counter()
    while True:
        params = {"cal_type": "dark", "limit": QUERY_PAGE, "offset": seen}
        elapsed, response = timed_get(client, f"{INSTRUMENT}/query", params)
        body = response.json()
        count = len(body) if isinstance(body, list) else 0
        pages.append(elapsed)
        seen += count
        if count < QUERY_PAGE:
            break
    total = time.perf_counter() - started
    assert seen == expected, (seen, expected)
    return {
        f"query?cal_type= first page of {QUERY_PAGE} (ms)": _ms(pages[0]),
        f"query?cal_type= last full page of {QUERY_PAGE} (ms)": _ms(
            pages[-2] if len(pages) > 1 else pages[0]
        ),
        f"query?cal_type= mean page of {QUERY_PAGE} (ms)": _ms(statistics.mean(pages)),
        "query?cal_type= whole type (us per record)": total / seen * 1e6,
    }


def measure_changes(client: httpx.Client, last_seq: int) -> dict[str, float]:
    """A page of the changes feed at its start, middle and end (median of 5 each)."""
    figures = {}
    for where, since in (("start", 0), ("middle", last_seq // 2), ("end", last_seq - CHANGES_PAGE)):
        times = []
        for _ in range(5):
            elapsed, response = timed_get(
                client, f"{INSTRUMENT}/changes", {"since": since, "limit": CHANGES_PAGE}
            )
            assert len(response.json()["records"]) == CHANGES_PAGE
            times.append(elapsed)
        figures[f"changes page of {CHANGES_PAGE} at the {where} (ms)"] = _ms(
            statistics.median(times)
        )
    return figures


def measure_add(client: httpx.Client, first_index: int) -> dict[str, float]:
    """``add`` of ADD_RECORDS new records in requests of ADD_BATCH."""
    times = []
    for start in range(first_index, first_index + ADD_RECORDS, ADD_BATCH):
        batch = [make_record(i) for i in range(start, start + ADD_BATCH)]
        started = time.perf_counter()
        client.post(f"{INSTRUMENT}/add", json=batch, timeout=600).raise_for_status()
        times.append(time.perf_counter() - started)
    return {
        f"add of {ADD_BATCH} new records, median request (ms)": _ms(statistics.median(times)),
        f"add of {ADD_RECORDS} in all (records/s)": ADD_RECORDS / sum(times),
    }


class SizedArchive:
    """A catalog of one size and the server started on it."""

    def __init__(self, root: Path, db_url: str | None, size: int):
        self.root, self.db_url, self.size = root, db_url, size
        self.token = make_token(root, db_url)
        catalog = Catalog.open(root, db_url, instruments=[INSTRUMENT])
        try:
            took = fill(catalog, 0, size)
            with catalog.engine.connect() as conn:
                self.ids = [
                    row[0]
                    for row in conn.exec_driver_sql(
                        "SELECT id FROM records ORDER BY random() LIMIT 5000"
                    )
                ]
        finally:
            catalog.close()
        print(
            f"filled {size:,} records through Catalog.add (batches of {FILL_BATCH:,}) in "
            f"{took:.1f} s = {size / max(took, 1e-9):,.0f} records/s"
        )
        #: Index of the next record made (file names are unique).
        self.next_index = size
        self.server, self.base = start_server(root, db_url)
        self.client = httpx.Client(
            base_url=self.base + "/", headers={"Authorization": f"Bearer {self.token}"}
        )

    def counts(self) -> tuple[int, int]:
        """The catalog's dark records and its newest ``seq``.

        Every record is a new one from :func:`make_record` (index ``i`` is a dark when
        ``i % 3 == 0``) and takes one ``seq``.
        """
        return (self.next_index + 2) // 3, self.next_index

    def measure(self, seconds: float) -> dict[str, float]:
        """One round of every figure."""
        darks, last_seq = self.counts()
        figures = measure_lookups(self.client, self.ids)
        many = bench_query(self.base, self.token, self.ids, seconds)
        figures["query?cal_id= 32 clients (requests/s)"] = many["requests_per_second"]
        figures["query?cal_id= 32 clients p99 (ms)"] = many["p99_ms"]
        figures.update(measure_type_pages(self.client, darks))
        figures.update(measure_changes(self.client, last_seq))
        figures.update(measure_add(self.client, self.next_index))
        self.next_index += ADD_RECORDS
        return figures

    def close(self) -> None:
        self.client.close()
        self.server.terminate()
        self.server.wait()


#: Figures where more is better: their growth is read the other way round.
_HIGHER_IS_BETTER = ("records/s", "requests/s")


def print_table(sizes: list[int], results: list[dict]) -> None:
    names = list(results[0])
    width = max(len(name) for name in names)
    head = "".join(f"{size:>14,}" for size in sizes)
    print(f"\n{'figure (catalog size)':<{width}}{head}   ratio largest/smallest (target <= 2)")
    for name in names:
        values = [result[name] for result in results]
        ratio = values[-1] / values[0] if values[0] else float("inf")
        if any(unit in name for unit in _HIGHER_IS_BETTER):
            ratio = 1 / ratio if ratio else float("inf")  # slowdown factor
        cells = "".join(f"{value:>14,.2f}" for value in values)
        flag = "" if ratio <= 2 else "  <-- over 2x"
        print(f"{name:<{width}}{cells}   {ratio:.2f}{flag}")
    print("(for records/s and requests/s the ratio is smallest/largest: how much slower)")


def best_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's best round: the lowest time, the highest rate."""
    best = {}
    for name in rounds[0]:
        values = [figures[name] for figures in rounds]
        higher = any(unit in name for unit in _HIGHER_IS_BETTER)
        best[name] = max(values) if higher else min(values)
    return best


def run_scale(db_url: str | None, sizes: list[int], seconds: float, rounds: int = 2) -> None:
    """Fill a catalog of each size in ``sizes``, measure them in turns, print side by side.

    Every size has its catalog and server, all running at once, and the rounds
    take the sizes in turns, so that other work on a shared machine weighs on
    every size alike; each figure is its best round.
    """
    sizes = sorted(sizes)
    archives: list[SizedArchive] = []
    with (
        bench_databases(db_url, sizes) as urls,
        tempfile.TemporaryDirectory(prefix="koa-bench-scale-") as folder,
    ):
        try:
            for size, url in zip(sizes, urls, strict=True):
                archives.append(SizedArchive(Path(folder) / f"archive-{size}", url, size))
            measured: list[list[dict]] = [[] for _ in sizes]
            for number in range(rounds):
                for archive, results in zip(archives, measured, strict=True):
                    started = time.perf_counter()
                    results.append(archive.measure(seconds))
                    print(
                        f"round {number + 1}: measured {archive.size:,} in "
                        f"{time.perf_counter() - started:.1f} s"
                    )
        finally:
            for archive in archives:
                archive.close()
    print_table(sizes, [best_of(results) for results in measured])

"""The archive at scale: per-request figures at each catalog size, side by side.

Run from ``bench/archive.py --sizes 100000,1000000`` (SQLite) or with
``--db postgresql://...`` (a database of its own is created on that server for
the run and dropped afterwards).

For each size N the catalog is filled up to N records through the catalog's own
bulk path (:meth:`Catalog.add`, batches of 10,000, no HTTP), then a server is
started on it and measured through real HTTP on loopback:

- ``query?cal_id=``: one keep-alive client, p50 over 200 random ids (the lowest of
  three rounds); then 32 concurrent keep-alive clients (requests/s and p99), as
  ``bench/archive.py``;
- ``lastUpdated``: p50 of 100 requests (the lowest of three rounds);
- ``query?cal_type=dark`` paged with ``limit``/``offset`` as ``RemoteCalibrationDB``
  pages it (3,000 per page): time of the first page, the last page and the mean
  page, and the whole type (a third of the catalog) in microseconds per record;
- ``changes``: a page of 1,000 at the start, the middle and the end of the feed;
- ``add`` of 10,000 new records in 10 requests of 1,000: seconds per request.

The catalog grows from one size to the next, so each size is filled only once.
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
def bench_database(db_url: str | None) -> Iterator[str | None]:
    """Yield the run's catalog URL: None (SQLite) or a fresh database on ``db_url``'s server."""
    if not db_url:
        yield None
        return
    url = sa.engine.make_url(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {BENCH_DATABASE}")
        conn.exec_driver_sql(f"CREATE DATABASE {BENCH_DATABASE}")
    try:
        yield url.set(database=BENCH_DATABASE).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
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


def measure_size(root: Path, db_url: str | None, token: str, size: int, seconds: float) -> dict:
    """Every figure of one catalog size, through a server started for it."""
    catalog = Catalog.open(root, db_url, instruments=[INSTRUMENT])
    try:
        with catalog.engine.connect() as conn:
            ids = [
                row[0]
                for row in conn.exec_driver_sql(
                    "SELECT id FROM records ORDER BY random() LIMIT 5000"
                )
            ]
            darks = conn.exec_driver_sql(
                "SELECT count(*) FROM records WHERE cal_type = 'dark'"
            ).scalar()
            last_seq = conn.exec_driver_sql("SELECT max(seq) FROM records").scalar()
            total = conn.exec_driver_sql("SELECT count(*) FROM records").scalar()
    finally:
        catalog.close()
    server, base = start_server(root, db_url)
    figures: dict[str, float] = {}
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base + "/", headers=headers) as client:
            client.get("healthz").raise_for_status()
            figures.update(measure_lookups(client, ids))
            many = bench_query(base, token, ids, seconds)
            figures["query?cal_id= 32 clients (requests/s)"] = many["requests_per_second"]
            figures["query?cal_id= 32 clients p99 (ms)"] = many["p99_ms"]
            figures.update(measure_type_pages(client, darks))
            figures.update(measure_changes(client, last_seq))
            figures.update(measure_add(client, total))
    finally:
        server.terminate()
        server.wait()
    return figures


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


def run_scale(db_url: str | None, sizes: list[int], seconds: float) -> None:
    """Fill, measure and print each catalog size in ``sizes`` (ascending)."""
    sizes = sorted(sizes)
    results = []
    with (
        bench_database(db_url) as url,
        tempfile.TemporaryDirectory(prefix="koa-bench-scale-") as folder,
    ):
        root = Path(folder) / "archive"
        token = make_token(root, url)
        present = 0
        for size in sizes:
            catalog = Catalog.open(root, url, instruments=[INSTRUMENT])
            try:
                with catalog.engine.connect() as conn:
                    present = conn.exec_driver_sql("SELECT count(*) FROM records").scalar()
                wanted = max(0, size - present)
                took = fill(catalog, present, present + wanted)
            finally:
                catalog.close()
            print(
                f"filled {wanted:,} records through Catalog.add (batches of {FILL_BATCH:,}) in "
                f"{took:.1f} s = {wanted / max(took, 1e-9):,.0f} records/s; catalog: {size:,}"
            )
            started = time.perf_counter()
            results.append(measure_size(root, url, token, size, seconds))
            print(f"measured {size:,} in {time.perf_counter() - started:.1f} s")
    print_table(sizes, results)

"""Benchmark of the manifest check page: the time to check a manifest of the largest size.

Run::

    python3 bench/web_manifest.py                                   # SQLite catalog
    python3 bench/web_manifest.py --db postgresql://postgres@127.0.0.1:5432/test
    python3 bench/web_manifest.py --cache                           # a local cache
    python3 bench/web_manifest.py --families 50                     # pins sharing families
    python3 bench/web_manifest.py --compare                         # the manifest with itself

It fills a catalog (or a cache) with ``--pins`` calibrations in ``--families`` version
families (each pinned calibration has a newer version, so every family is looked up),
records a run manifest pinning each of them once with the library's recorder (about
5 MiB for the default 6,000 pins, the page's limit), and posts it to the page through
the ASGI application, ``--repeat`` times. It prints the manifest's size, the median and
worst time of a check, and the page's summary line. PostgreSQL: a schema-free database
of its own is created and dropped (``koa_bench_web_manifest_<pid>``).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from starlette.testclient import TestClient

from koa_middleware.archive.app import create_app
from koa_middleware.archive.state import ArchiveSettings
from koa_middleware.cache.local_cache import LocalCache
from koa_middleware.config import resolve_config
from koa_middleware.manifest import ManifestRecorder
from koa_middleware.records import ARCHIVE_REQUIRED_FIELDS, validate_record
from koa_middleware.selectors import NearestInTimeSelector
from koa_middleware.web import create_local_site
from koa_middleware.web.cache_reader import CacheReader


def records(pins: int, families: int) -> tuple[list[dict], list[dict]]:
    """The pinned calibrations (version 001) and a version 002 of each family."""
    pinned, newer = [], []
    for n in range(pins):
        family = n % families
        pinned.append(
            {"id": str(uuid.uuid4()), "filename": f"dark_{n:05d}.fits", "cal_type": "dark",
             "datetime_obs": f"2024-01-01T00:{family // 60 % 60:02d}:{family % 60:02d}.000",
             "spectrograph": f"spec_{family // 3600}", "instrument_era": "era1",
             "origin": "KECK", "cal_version": "001", "file_md5": "a" * 32, "file_size": 10}
        )  # fmt: skip
    for record in pinned[:families]:
        newer.append(dict(record, id=str(uuid.uuid4()), filename="v2_" + record["filename"],
                          cal_version="002"))  # fmt: skip
    return pinned, newer


def manifest(path: Path, pinned: list[dict]) -> bytes:
    recorder = ManifestRecorder(path, "hispec", "http://127.0.0.1:8750/api/calibrations")
    selector = NearestInTimeSelector("dark", max_days=3)
    for n, record in enumerate(pinned):
        frame = {"filename": f"sci_{n:05d}.fits", "datetime_obs": record["datetime_obs"],
                 "spectrograph": record["spectrograph"], "instrument_era": "era1",
                 "exptime": 300.0, "object": f"target {n % 97}"}  # fmt: skip
        recorder.add("select_and_get_calibration", frame, selector, record)
    recorder.write()
    return path.read_bytes()


@contextlib.contextmanager
def postgres(url: str):
    name = f"koa_bench_web_manifest_{__import__('os').getpid()}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="PostgreSQL URL (default: a SQLite catalog)")
    parser.add_argument("--cache", action="store_true", help="a local cache instead")
    parser.add_argument("--pins", type=int, default=6000)
    parser.add_argument("--families", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="post it twice: a comparison")
    args = parser.parse_args()
    pinned, newer = records(args.pins, args.families)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        checked = [validate_record(r, ARCHIVE_REQUIRED_FIELDS) for r in pinned + newer]
        if args.cache:
            cache = LocalCache.open(resolve_config("hispec", str(folder / "cache")))
            stack.callback(cache.close)
            cache.db.add_validated(checked)
            app, kind = create_local_site(CacheReader({"hispec": cache})), "local cache"
        else:
            url = stack.enter_context(postgres(args.db)) if args.db else None
            settings = ArchiveSettings(root=folder / "archive", db_url=url,
                                       instruments=("hispec",), anonymous_read=True)  # fmt: skip
            app = create_app(settings)
            stack.callback(app.state.archive.catalog.close)
            app.state.archive.catalog.add("hispec", checked)
            kind = "PostgreSQL catalog" if url else "SQLite catalog"
        data = manifest(folder / "run.json", pinned)
        client = TestClient(app)
        page = client.get("/ui/hispec/manifest").text
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        times, summary = [], ""
        for _ in range(args.repeat):
            started = time.perf_counter()
            files = [("manifest", ("run.json", data, "application/json"))]
            if args.compare:
                files.append(("other", ("again.json", data, "application/json")))
            answer = client.post("/ui/hispec/manifest", data={"csrf": token}, files=files)
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text[-1000:]
            summary = re.search(r"<strong>(\d+ (of \d+ pins must be redone|same)[^<]*)</strong>",
                                answer.text)  # fmt: skip
        print(f"{kind}: manifest of {len(data) / 2**20:.2f} MiB, {args.pins} pins in "
              f"{args.families} families; check median {statistics.median(times):.2f} s, "
              f"worst {max(times):.2f} s over {args.repeat}; page: {summary.group(1)}")  # fmt: skip
        print("command:", " ".join([Path(sys.executable).name, *sys.argv]))


if __name__ == "__main__":
    main()

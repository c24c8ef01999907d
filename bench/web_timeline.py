"""Size and time of the timeline page at many records, on each source of the pages.

Run::

    PYTHONPATH=$PWD python3 bench/web_timeline.py [N]

It fills a SQLite catalog, a local cache and (when ``KOA_TEST_POSTGRES_URL`` is set)
a PostgreSQL catalog with N records (default 100,000: seven types, two
spectrographs, three eras, so 42 lanes, spread over five years) through their bulk
write paths, then times ``GET /ui/hispec/timeline`` (best of 3, in process through
the ASGI app) and prints the page's and its SVG's sizes.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.bulk_records import bulk_add, many_records  # noqa: E402
from support.postgres import POSTGRES_ENV  # noqa: E402
from support.web_sites import open_site  # noqa: E402

TYPES = ["bias", "dark", "flat", "arc", "wavecal", "trace", "badpix"]
FACETS = {"spectrograph": ["yJ", "HK"], "instrument_era": ["era1", "era2", "era3"]}


def measure(kind: str, count: int) -> None:
    with tempfile.TemporaryDirectory() as folder, open_site(kind, Path(folder)) as site:
        started = time.perf_counter()
        bulk_add(site, many_records(count, TYPES, FACETS))
        filled = time.perf_counter() - started
        times = []
        for _ in range(3):
            started = time.perf_counter()
            page = site.get("/hispec/timeline")
            times.append(time.perf_counter() - started)
        html = page.text
        svg = html[html.index("<svg") : html.index("</svg>") + 6]
        print(
            f"{kind:8s} {count:>7,} records: page {len(html.encode()) / 1000:6.1f} KB, "
            f"SVG {len(svg.encode()) / 1000:6.1f} KB, best of 3 {min(times):.2f} s "
            f"(filled in {filled:.1f} s)"
        )


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    kinds = ["sqlite", "cache"] + (["postgres"] if os.environ.get(POSTGRES_ENV) else [])
    print(f"PYTHONPATH=$PWD python3 bench/web_timeline.py {count}")
    for kind in kinds:
        measure(kind, count)


if __name__ == "__main__":
    main()

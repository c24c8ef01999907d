"""Speed of the example selectors on a cache laid out like a real instrument's.

Run::

    python3 bench/select_speed.py [N]

It fills a SQLite database with N records (default 100,000): record i has
``datetime_obs`` = 2024-01-01T00:00 + i hours, ``mjd_start`` its MJD, ``cal_type``
cycling dark/flat/arc/bias, ``spectrograph`` spec_a/spec_b by (i // 4) % 2,
``instrument_era`` era1/era2 by (i // 8) % 2 and ``master_cal`` 1. Then it times
``select`` of each example selector for 500 frames spread over the period, and
prints p50 and p95.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from koa_middleware.database.local_database import LocalCalibrationDB
from koa_middleware.fits import mjd_from_datetime
from koa_middleware.selectors import LatestVersionSelector, NearestInTimeSelector


def fill(db: LocalCalibrationDB, count: int) -> None:
    start = datetime(2024, 1, 1)
    records = []
    for i in range(count):
        moment = start + timedelta(hours=i)
        records.append(
            {
                "id": str(uuid.uuid4()),
                "filename": f"cal_{i:06d}.fits",
                "cal_type": ("dark", "flat", "arc", "bias")[i % 4],
                "datetime_obs": moment.isoformat(),
                "mjd_start": mjd_from_datetime(moment),
                "spectrograph": ("spec_a", "spec_b")[(i // 4) % 2],
                "instrument_era": ("era1", "era2")[(i // 8) % 2],
                "master_cal": 1,
                "origin": "KECK",
                "cal_version": "001",
                "last_updated": "2024-01-01T00:00:00.000",
            }
        )
    db.add(records)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as folder:
        db = LocalCalibrationDB(Path(folder) / "bench.db", "hispec")
        fill(db, count)
        span_days = count / 24
        selectors = [
            NearestInTimeSelector("dark", master_only=True),
            NearestInTimeSelector("dark", master_only=True, max_days=3),
            LatestVersionSelector("flat", validity_days=2, master_only=True),
        ]
        print(f"N = {count} records")
        for selector in selectors:
            times = []
            for k in range(500):
                frame = {
                    "mjd_start": 60310 + (k * 7919 % 1000) / 1000 * span_days,
                    "spectrograph": "spec_a",
                    "instrument_era": "era1",
                }
                began = time.perf_counter()
                selector.select(frame, db)
                times.append(time.perf_counter() - began)
            times.sort()
            p50 = statistics.median(times) * 1e3
            p95 = times[int(len(times) * 0.95)] * 1e3
            print(f"{selector!r}: select p50 {p50:.3f} ms, p95 {p95:.3f} ms")
        db.close()
    print(f"command: python3 bench/select_speed.py {count}")


if __name__ == "__main__":
    main()

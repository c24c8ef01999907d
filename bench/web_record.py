"""Speed and size of the record page on an archive (SQLite catalog, folder storage).

Run::

    python3 bench/web_record.py [MB]

It starts the archive application in process (no network), adds a family of two
darks whose files are FITS files of MB megabytes (default 100; the header is 3
blocks, the rest data), gives the first a 10 MB text column, and times, over 30
requests each: the record page (its FITS header read from storage), the diff of the
two versions (both headers read), and a ``Range`` request of 1,000 bytes.
It prints p50 and p95 in milliseconds and the size of each page. The header read is
bounded (at most 36 blocks), so the figures do not grow with MB.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from starlette.testclient import TestClient

from koa_middleware.archive.app import create_app
from koa_middleware.archive.schema import records as records_table
from koa_middleware.archive.state import ArchiveSettings
from koa_middleware.archive.tokens import TokenStore

REQUESTS = 30


def fits_bytes(megabytes: int, exptime: int) -> bytes:
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                    8",
        "NAXIS   =                    0",
        f"EXPTIME =                 {exptime:>4}",
    ]
    cards += [f"HISTORY step {n}" for n in range(80)] + ["END"]
    header = b"".join(card.ljust(80).encode() for card in cards)
    header = header.ljust(-(-len(header) // 2880) * 2880)
    return header + b"\0" * (megabytes << 20)


def timed(client: TestClient, url: str, headers: dict | None = None) -> tuple[list[float], int]:
    spent, size = [], 0
    for _ in range(REQUESTS):
        start = time.perf_counter()
        response = client.get(url, headers=headers)
        spent.append((time.perf_counter() - start) * 1000)
        assert response.status_code in (200, 206), (url, response.status_code)
        size = len(response.content)
    return spent, size


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with tempfile.TemporaryDirectory() as folder:
        settings = ArchiveSettings(root=Path(folder), instruments=("hispec",), anonymous_read=True)
        app = create_app(settings)
        catalog = app.state.archive.catalog
        client = TestClient(app)
        token = TokenStore(catalog.engine).create("bench", "write")
        ids = []
        for version, exptime in ((1, 30), (2, 60)):
            data = fits_bytes(megabytes, exptime)
            cal_id = str(uuid.uuid4())
            md5 = hashlib.md5(data).hexdigest()
            auth = {"Authorization": f"Bearer {token}"}
            put = client.put(f"/api/calibrations/hispec/files/{cal_id}", content=data,
                             headers={**auth, "X-File-MD5": md5})  # fmt: skip
            assert put.status_code == 201, put.text
            record = {"id": cal_id, "filename": f"dark_v{version}.fits", "cal_type": "dark",
                      "datetime_obs": "2024-01-01T00:00:00.000", "origin": "KECK",
                      "cal_version": f"{version:03d}", "file_md5": md5,
                      "file_size": len(data)}  # fmt: skip
            assert client.post("/api/calibrations/hispec/add", json=record, headers=auth).is_success
            ids.append(cal_id)
        with catalog.engine.begin() as conn:  # a 10 MB value, as an older archive kept it
            conn.execute(records_table.update().where(records_table.c.id == ids[0])
                         .values(extra={"huge": "x" * 10_000_000}))  # fmt: skip
        cases = {
            "record page": (f"/ui/hispec/records/{ids[0]}", None),
            "diff of two versions": (f"/ui/hispec/records/{ids[0]}?diff={ids[0]},{ids[1]}", None),
            "Range: 1,000 bytes": (f"/api/calibrations/hispec/files/{ids[0]}",
                                        {"Range": "bytes=1000-1999"}),
        }  # fmt: skip
        print(f"files of {megabytes} MB each, a 10 MB column, {REQUESTS} requests per case")
        for name, (url, headers) in cases.items():
            spent, size = timed(client, url, headers)
            p95 = statistics.quantiles(spent, n=20)[18]
            print(f"{name:<26} p50 {statistics.median(spent):7.1f} ms  p95 {p95:7.1f} ms  "
                  f"answer {size:,} bytes")  # fmt: skip
        catalog.close()


if __name__ == "__main__":
    main()

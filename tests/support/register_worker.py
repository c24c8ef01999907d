"""A pipeline process that registers calibrations.

``python -m support.register_worker CACHE PREFIX N [READY]`` (with ``tests`` on the
path) registers N darks of one version family with ``new_version=True``; with N = 0
it registers darks of ever new families until it is killed. Once its store is open
it creates the file READY (if given), then waits for ``CACHE/go`` to exist before
starting, so several workers start together.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from datetime import datetime, timedelta

from koa_middleware import CalibrationStore
from support.children import announce_ready
from support.models import FileModel


def main() -> None:
    cache, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with CalibrationStore("hispec", cache, connect_remote=False) as store:
        if len(sys.argv) > 4:
            announce_ready(sys.argv[4])
        while not os.path.exists(os.path.join(cache, "go")):
            time.sleep(0.005)
        # one shared family when counting; distinct families per worker when looping
        start = datetime(2024, 1, 1)
        if not count:
            start += timedelta(days=1 + zlib.crc32(prefix.encode()) % 10_000)
        i = 0
        while count == 0 or i < count:
            when = start if count else start + timedelta(seconds=i)
            record = {
                "filename": f"{prefix}_{i:06d}.fits",
                "cal_type": "dark",
                "datetime_obs": when.isoformat(),
                "spectrograph": "spec_a",
            }
            data = os.urandom(32 * 1024 + i % 4096)
            store.register_calibration(FileModel(record, data=data), new_version=bool(count))
            i += 1


if __name__ == "__main__":
    main()

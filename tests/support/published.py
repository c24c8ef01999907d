"""Put calibration records and files on a real archive for client tests.

Examples
--------
>>> records = publish(remote_v2_with_write_token, tmp_path / "files", 3)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from koa_middleware.client.remote_database import RemoteCalibrationDB

__all__ = ["new_record", "publish"]


def new_record(index: int, data: bytes, **fields) -> dict:
    """A complete record for ``data``."""
    record = {
        "id": str(uuid.uuid4()),
        "filename": f"cal_{index:05d}_{uuid.uuid4().hex[:6]}.fits",
        "cal_type": "dark" if index % 2 == 0 else "flat",
        "datetime_obs": f"2026-01-{1 + index % 28:02d}T00:00:{index % 60:02d}.000",
        "origin": "KECK",
        "cal_version": "001",
        "file_md5": hashlib.md5(data).hexdigest(),
        "file_size": len(data),
        "spectrograph": "red" if index % 3 else "blue",
    }
    record.update(fields)
    return record


def publish(
    publisher: RemoteCalibrationDB, folder: Path, count: int, size: int = 2048, **fields
) -> list[dict]:
    """Upload ``count`` files and add their records through ``publisher`` (v2); return them."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        data = os.urandom(size)
        record = new_record(index, data, **fields)
        path = folder / record["filename"]
        path.write_bytes(data)
        publisher.upload_calibration_file(record["id"], path, record["file_md5"])
        records.append(record)
    publisher.add(records)
    return records

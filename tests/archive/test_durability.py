"""SIGKILL during uploads and adds: what was acknowledged survives, nothing is half-visible."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time

import httpx
import pytest

from support.archive import make_record, md5_hex

ROUNDS = 3


@pytest.mark.slow
def test_kill_during_uploads_and_adds(start_archive):
    archive = start_archive()
    rng = random.Random(1234)
    sent: dict[str, dict] = {}  # every record a client tried to add
    acknowledged_files: dict[str, str] = {}  # id -> md5, after 201/200
    acknowledged_records: set[str] = set()  # ids, after 200 from add

    for _ in range(ROUNDS):
        stop = threading.Event()

        def publisher(stop: threading.Event = stop) -> None:
            headers = {"Authorization": f"Bearer {archive.tokens['write']}"}
            with httpx.Client(base_url=archive.base + "/", headers=headers, timeout=30) as client:
                while not stop.is_set():
                    data = os.urandom(rng.randint(1, 6) * 1_000_000)
                    record = make_record(file_md5=md5_hex(data), file_size=len(data))
                    sent[record["id"]] = record
                    try:
                        response = client.put(
                            f"hispec/files/{record['id']}",
                            content=data,
                            headers={"X-File-MD5": record["file_md5"]},
                        )
                        if response.status_code != 201:
                            continue
                        acknowledged_files[record["id"]] = record["file_md5"]
                        if client.post("hispec/add", json=record).status_code == 200:
                            acknowledged_records.add(record["id"])
                    except httpx.HTTPError:
                        return  # the server died under us

        threads = [threading.Thread(target=publisher) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.8, 1.6))
        archive.server.kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        archive.server.start()  # same port, same root and catalog

    assert acknowledged_records, "no add was acknowledged before the kills; nothing was tested"
    client = archive.client("read")
    records = client.get("hispec/query").json()
    present = {r["id"]: r for r in (records if isinstance(records, list) else [])}
    # Every acknowledged record is there, with its file.
    assert acknowledged_records <= set(present)
    for cal_id, md5 in acknowledged_files.items():
        response = client.get(f"hispec/files/{cal_id}")
        assert response.status_code == 200
        assert hashlib.md5(response.content).hexdigest() == md5
    # Whatever is visible is whole: each record is exactly what was sent, and its file
    # (uploaded first) is complete.
    for cal_id, record in present.items():
        expected = {k: v for k, v in sent[cal_id].items()}
        assert {k: record[k] for k in expected} == expected
        response = client.get(f"hispec/files/{cal_id}")
        assert response.status_code == 200
        assert hashlib.md5(response.content).hexdigest() == record["file_md5"]
    # No partial file is served under any id a client tried.
    for cal_id, record in sent.items():
        response = client.get(f"hispec/files/{cal_id}")
        if response.status_code == 200:
            assert hashlib.md5(response.content).hexdigest() == record["file_md5"]
        else:
            assert response.status_code == 404
    # The changes feed holds each visible record once.
    seqs = [r["seq"] for r in present.values()]
    assert len(set(seqs)) == len(seqs)
    # Files placed in storage are all complete (partial uploads stay in .incoming).
    stored = archive.root / "files" / "hispec"
    for path in stored.iterdir():
        assert hashlib.md5(path.read_bytes()).hexdigest() == sent[path.name]["file_md5"]

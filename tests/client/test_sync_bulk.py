"""A first sync large enough to build the cache's indexes after its rows, over v1 and v2.

Where the bulk write meets the sync: every record arrives, the retraction with
it (v2), a record the cache cannot take (its file name held here by another id) is
set aside while the rest are stored, and the cache keeps every one of its
indexes.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid

from koa_middleware.client.sync import sync_from_archive
from koa_middleware.database.bulk_load import BULK_ROWS
from support.archive import make_client
from support.bulk_records import many_records

COUNT = BULK_ROWS + 300


def indexes(db) -> list[tuple[str, str]]:
    with sqlite3.connect(db.db_path) as conn:
        return conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
        ).fetchall()


def test_a_large_first_sync_stores_every_record_and_keeps_the_indexes(
    shared_archive, protocol, publisher, local_db, instrument, caplog
):
    # v1 answers with the whole list; v2 pages of BULK_ROWS records (the most its changes feed
    # gives at once) make the first page a batch as large as the bulk write takes.
    remote = make_client(
        shared_archive.url(protocol),
        instrument,
        shared_archive.tokens["write"],
        page_size=BULK_ROWS,
    )
    records = many_records(COUNT, ["dark", "flat"], {}, start=0)
    for record in records:
        record["filename"] = f"{instrument}_{record['filename']}"
    publisher.add(records)
    withdrawn = records[COUNT // 2]["id"]
    assert publisher.retract([withdrawn], "hot pixels") == [withdrawn]
    # A record of this cache holds the file name of one in the first page, under another id.
    clash = records[5]
    local_db.add(
        {
            "id": str(uuid.uuid4()),
            "filename": clash["filename"],
            "cal_type": "dark",
            "datetime_obs": "2026-01-01T00:00:00.000",
            "last_updated": "2000-01-01T00:00:00.000",
        }
    )
    before = indexes(local_db)

    with caplog.at_level(logging.DEBUG, logger="koa_middleware.database.bulk_load"):
        report = sync_from_archive(local_db, remote)
    remote.close()
    built = [r.getMessage() for r in caplog.records if r.name.endswith("bulk_load")]
    assert any(message.startswith('Building index "ux_') for message in built), built

    # Protocol 1 has no retractions: a retracted calibration is not in its answers at all.
    arrived = [
        r["id"] for r in records if r is not clash and (protocol == 2 or r["id"] != withdrawn)
    ]
    assert sorted(r["id"] for r in report.added) == sorted(arrived)
    assert list(report.set_aside) == [clash["id"]]
    assert local_db.ids_present(r["id"] for r in records) == set(arrived)
    assert local_db.query_id(records[7]["id"])["filename"] == records[7]["filename"]
    if protocol == 2:
        assert local_db.retraction(withdrawn)["reason"] == "hot pixels"
    assert indexes(local_db) == before
    with sqlite3.connect(local_db.db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

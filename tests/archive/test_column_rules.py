"""Records no client could store are refused: column names that differ only by case, too many.

SQLite compares column names without regard to case, and a table holds at most
2,000 columns: a record breaking either rule would stop every client's sync.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from koa_middleware.archive.catalog import Catalog
from koa_middleware.archive.columns import MAX_COLUMNS_PER_INSTRUMENT
from support.archive import make_record


def add(client, records, inst: str = "hispec"):
    body = json.dumps(records).encode()
    return client.post(f"{inst}/add", content=body, headers={"Content-Type": "application/json"})


def refused(response, *words: str) -> dict:
    """Assert a 400 JSON error whose message or errors mention every word."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "bad_request" and body["message"], body
    text = (body["message"] + json.dumps(body.get("errors", []))).lower()
    for word in words:
        assert word.lower() in text, (word, body)
    return body


def test_columns_differing_by_case_across_records_of_a_batch(archive, snapshot):
    client = archive.client("write")
    before = snapshot(archive)
    batch = [make_record(EXPTIME=30), make_record(), make_record(exptime=60)]
    body = refused(add(client, batch), "exptime", "case")
    assert [e["index"] for e in body["errors"]] == [2]
    assert snapshot(archive) == before


def test_columns_differing_by_case_in_one_record(archive, snapshot):
    client = archive.client("write")
    before = snapshot(archive)
    refused(add(client, make_record(EXPTIME=30, exptime=30)), "exptime", "case")
    refused(add(client, make_record(Filename="x.fits")), "filename", "case")
    assert snapshot(archive) == before


def test_columns_differing_by_case_from_stored_ones(archive, snapshot):
    client = archive.client("write")
    assert add(client, make_record(EXPTIME=30)).status_code == 200
    before = snapshot(archive)
    refused(add(client, make_record(exptime=60)), "exptime", "EXPTIME", "case")
    refused(add(client, [make_record(), make_record(Exptime=1)]), "Exptime", "EXPTIME")
    # Server fields and core fields are columns of every client table too.
    refused(add(client, make_record(Last_Updated="2024-01-01T00:00:00.000")), "last_updated")
    refused(add(client, make_record(SEQ=1)), "seq")
    refused(add(client, make_record(CAL_TYPE="dark")), "cal_type")
    assert snapshot(archive) == before
    # The stored spelling is welcome, and another instrument has its own columns.
    assert add(client, make_record(EXPTIME=60)).status_code == 200
    assert add(client, make_record(exptime=60), inst="liger").status_code == 200


def test_too_many_columns_in_one_record(archive, snapshot):
    client = archive.client("write")
    before = snapshot(archive)
    wide = make_record(**{f"c{i:04d}": i for i in range(2100)})
    refused(add(client, wide), str(MAX_COLUMNS_PER_INSTRUMENT), "columns")
    assert snapshot(archive) == before


def test_too_many_columns_across_adds(archive, snapshot):
    client = archive.client("write")
    room = MAX_COLUMNS_PER_INSTRUMENT - len(make_record()) - 3  # the server's own fields
    assert add(client, make_record(**{f"a{i}": i for i in range(room - 5)})).status_code == 200
    before = snapshot(archive)
    batch = [make_record(**{f"b{i}": i for i in range(3)}) for _ in range(2)]
    batch.append(make_record(**{f"x{i}": i for i in range(10)}))
    body = refused(add(client, batch), str(MAX_COLUMNS_PER_INSTRUMENT), "x")
    assert [e["index"] for e in body["errors"]] == [2]
    assert snapshot(archive) == before
    # Up to the limit is fine; existing columns can always be used again.
    assert add(client, batch[:2]).status_code == 200
    assert add(client, make_record(a0=1, b1=2)).status_code == 200


def test_catalog_from_before_the_column_registry(archive, snapshot):
    """Columns of records stored before the registry existed are found when it is empty."""
    client = archive.client("write")
    assert add(client, make_record(EXPTIME=30)).status_code == 200
    catalog = Catalog.open(archive.root, archive.server.db_url)
    try:
        with catalog.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM record_columns"))
    finally:
        catalog.close()
    before = snapshot(archive)
    refused(add(client, make_record(exptime=60)), "exptime", "EXPTIME")
    assert snapshot(archive) == before
    assert add(client, make_record(EXPTIME=1, other=2)).status_code == 200

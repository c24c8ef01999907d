"""Paging ``query`` with ``limit`` and ``offset``: a page starts where the previous one ended.

The archive remembers where each page ended and reads the next page from there
(``page_marks.py``) instead of skipping ``offset`` rows. These tests hold it to
giving what ``OFFSET`` gives: on real servers (SQLite and PostgreSQL) while
records are added, changed and retracted between pages, and on a catalog
directly, where a mark that is not the true end of a page shows which path was
taken.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from koa_middleware.archive.catalog import Catalog
from koa_middleware.archive.page_marks import PageMark, PageMarks
from koa_middleware.archive.query_stream import RecordBatches
from koa_middleware.archive.upgrade import create_missing_indexes
from support.archive import make_record

PAGE = 40


def add(client: httpx.Client, batch: list[dict]) -> None:
    response = client.post("hispec/add", json=batch)
    assert response.status_code == 200, response.text


def records_of(count: int, start: int = 0) -> list[dict]:
    return [
        make_record(cal_type=("dark", "flat")[i % 2], filename=f"page_{i:05d}.fits", exptime=i)
        for i in range(start, start + count)
    ]


def page(client: httpx.Client, offset: int, **filters) -> list[dict]:
    answer = client.get("hispec/query", params={**filters, "limit": PAGE, "offset": offset})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body if isinstance(body, list) else []


def whole(client: httpx.Client, **filters) -> list[dict]:
    body = client.get("hispec/query", params=filters).json()
    return body if isinstance(body, list) else []


@pytest.mark.parametrize(
    "filters", [{}, {"cal_type": "dark"}, {"cal_type": "flat", "include_retracted": "1"}]
)
def test_pages_are_the_slices_of_the_whole_answer_while_it_changes(start_archive, filters):
    archive = start_archive()
    client = archive.client("write")
    # Several adds of many records each: long runs of one last_updated, told apart by id.
    for start in range(0, 600, 200):
        add(client, records_of(200, start))
    everything = whole(client, **filters)
    pages = [page(client, offset, **filters) for offset in range(0, len(everything) + 1, PAGE)]
    assert [r for p in pages for r in p] == everything

    # Page again (the ends of the pages are now known), changing the catalog in between:
    # every page is what the whole answer at that moment holds at its offset.
    first = {k: v for k, v in everything[0].items() if k not in ("seq", "last_updated")}
    for name in ("published_at", "retracted_at", "retract_reason"):
        first.pop(name, None)
    changes = {
        2: lambda: add(client, records_of(50, 1000)),
        4: lambda: add(client, [dict(first, exptime=-1)]),
        6: lambda: client.post(
            "hispec/retract", json={"ids": [everything[7]["id"]], "reason": "bad"}
        ).raise_for_status(),
    }
    offset = 0
    for number in range(len(pages) + 5):
        if number in changes:
            changes[number]()
        now = whole(client, **filters)
        assert page(client, offset, **filters) == now[offset : offset + PAGE], number
        offset += PAGE
    # Unchanged again: the pages put together are the whole answer.
    now = whole(client, **filters)
    again = [page(client, offset, **filters) for offset in range(0, len(now) + 1, PAGE)]
    assert [r for p in again for r in p] == now


def test_last_page_of_an_exact_multiple_is_empty(start_archive):
    client = start_archive().client("write")
    add(client, records_of(2 * PAGE))
    assert len(page(client, 0)) == PAGE
    assert len(page(client, PAGE)) == PAGE
    answer = client.get("hispec/query", params={"limit": PAGE, "offset": 2 * PAGE})
    assert answer.json() == {"message": "No matching calibrations found."}


def _read(catalog: Catalog, marks: PageMarks, offset: int, limit: int = 5) -> list[str]:
    batches = RecordBatches(catalog, "hispec", {}, limit=limit, offset=offset, marks=marks)
    try:
        text = b""
        while chunk := batches.next_chunk():
            text += chunk + b","
    finally:
        batches.close()
    return [part.split('"')[0] for part in text.decode().split('"id":"')[1:]]


def test_a_page_mark_is_used_only_while_the_catalog_is_unchanged(
    tmp_path: Path, catalog_url: str | None
):
    catalog = Catalog.open(tmp_path, catalog_url, instruments=["hispec"])
    try:
        catalog.add("hispec", records_of(20))
        ordered = [r["id"] for r in catalog.query("hispec", {})]
        marks = PageMarks()
        assert _read(catalog, marks, 0) == ordered[:5]
        assert _read(catalog, marks, 5) == ordered[5:10]  # from the mark of the first page
        assert len(marks) == 2

        # A mark at offset 5 pointing after the 12th row, with the counter as it is:
        # the page is read from it (proving marks are followed, not OFFSET)...
        seq = max(r["seq"] for r in catalog.query("hispec", {}))
        twelfth = catalog.get("hispec", ordered[11])
        marks.remember("hispec", {}, False, 5, PageMark(seq, twelfth["last_updated"], ordered[11]))
        assert _read(catalog, marks, 5) == ordered[12:17]
        # ...until the catalog changes: then the page is read with OFFSET.
        catalog.add("hispec", records_of(1, 100))
        assert _read(catalog, marks, 5) == ordered[5:10]
    finally:
        catalog.close()


def test_marks_stay_few_and_small():
    marks = PageMarks(capacity=3)
    for offset in range(1, 6):
        marks.remember("hispec", {}, False, offset, PageMark(1, "t", "id"))
    assert len(marks) == 3
    assert marks.find("hispec", {}, False, 1) is None
    assert marks.find("hispec", {}, False, 5) is not None
    marks.remember("hispec", {"note": "x" * 5000}, False, 9, PageMark(1, "t", "id"))
    assert marks.find("hispec", {"note": "x" * 5000}, False, 9) is None


def test_an_older_catalog_gets_the_new_index_at_start(tmp_path: Path, catalog_url: str | None):
    catalog = Catalog.open(tmp_path, catalog_url, instruments=["hispec"])
    catalog.add("hispec", records_of(10))
    with catalog.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_records_cal_type_updated")
    catalog.close()
    catalog = Catalog.open(tmp_path, catalog_url, instruments=["hispec"])
    try:
        names = {i["name"] for i in sa.inspect(catalog.engine).get_indexes("records")}
        assert "ix_records_cal_type_updated" in names
        assert create_missing_indexes(catalog.engine) == []
        assert len(catalog.query("hispec", {"cal_type": "dark"})) == 5
    finally:
        catalog.close()

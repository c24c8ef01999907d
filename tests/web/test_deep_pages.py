"""Keyset pagination at 100,000 records: a page deep in the table is the right slice.

A page's "Next page" link carries the last row's sort value and id (``after=``), so
a page 99,900 rows deep is read from the index where it starts; this checks that it
holds exactly the rows that follow, in order, on every source.
"""

from __future__ import annotations

from koa_middleware.web.reader import encode_key
from support.bulk_records import bulk_add, many_records
from support.web_html import links, row_files

RECORDS = 100_000
LIMIT = 50


def test_a_page_deep_in_a_hundred_thousand_records_is_the_slice_that_follows(site):
    batch = many_records(RECORDS, ["dark", "flat", "arc"], {"spectrograph": ["yJ", "HK"]})
    bulk_add(site, batch)
    ordered = sorted(batch, key=lambda r: (r["filename"], r["id"]))
    first = site.get("/hispec/browse", sort="filename", order="asc", limit=str(LIMIT)).text
    assert f"<strong>{RECORDS}</strong> record(s) match" in first
    assert row_files(first) == [r["filename"] for r in ordered[:LIMIT]]
    # Two pages on by their links, then a jump 99,900 rows deep by a key.
    html = first
    for page in (1, 2):
        html = site.client.get(links(html, "Next page")[0]).text
        assert row_files(html) == [
            r["filename"] for r in ordered[page * LIMIT : (page + 1) * LIMIT]
        ]
    deep = RECORDS - 100
    after = encode_key(ordered[deep - 1]["filename"], ordered[deep - 1]["id"])
    html = site.get(
        "/hispec/browse", sort="filename", order="asc", limit=str(LIMIT), after=after
    ).text
    assert row_files(html) == [r["filename"] for r in ordered[deep : deep + LIMIT]]
    following = links(html, "Next page")
    assert following and all("offset" not in link for link in following)
    last = site.client.get(following[0]).text
    assert row_files(last) == [r["filename"] for r in ordered[deep + LIMIT :]]
    assert not links(last, "Next page")

"""Counts the pages keep between loads follow every change of the source at once."""

from __future__ import annotations

from koa_middleware.cache.local_cache import LocalCache
from koa_middleware.config import resolve_config
from koa_middleware.records import validate_record
from support.archive import make_record


def matches(site, **params) -> str:
    html = site.get("/hispec/browse", **params).text
    return html.split("<strong>", 1)[1].split("</strong>", 1)[0]


def overview_counts(site) -> str:
    html = site.get("/hispec/").text
    return html.split('id="counts-title"', 1)[1].split("</table>", 1)[0]


def test_counts_follow_a_publication_and_a_retraction(site):
    first = make_record(filename="dark_1.fits")
    site.add([first, make_record(filename="flat_1.fits", cal_type="flat")])
    assert matches(site) == "2" and matches(site, cal_type="dark") == "1"
    assert "<td>1</td>" in overview_counts(site)
    site.add([make_record(filename="dark_2.fits", datetime_obs="2024-02-01T00:00:00")])
    assert matches(site) == "3" and matches(site, cal_type="dark") == "2"
    assert "<td>2</td>" in overview_counts(site)  # two live darks now
    newest = site.get("/hispec/").text.split('id="newest-title"', 1)[1]
    assert "dark_2.fits" in newest.split("</table>", 1)[0]
    site.retract(first["id"], "bad bias")
    assert matches(site) == "2" and matches(site, include_retracted="1") == "3"
    assert 'include_retracted=1">1</a>' in overview_counts(site)  # one retracted dark


def test_a_cache_page_sees_what_another_connection_wrote(tmp_path):
    from support.web_sites import open_site

    with open_site("cache", tmp_path) as site:
        site.add([make_record(filename="dark_1.fits")])
        assert matches(site) == "1"
        other = LocalCache.open(resolve_config("hispec", str(tmp_path / "cache")))
        try:  # another process's sync, through a connection of its own
            other.db.add_validated([validate_record(make_record(filename="dark_2.fits"))])
        finally:
            other.close()
        assert matches(site) == "2"
        assert "<td>2</td>" in overview_counts(site)

"""Every page over the archive's catalog (SQLite, PostgreSQL) and over a local cache."""

from __future__ import annotations

import csv
import io
import json
import re

from koa_middleware.web import CSP
from support.archive import make_record
from support.web_html import links, row_files
from support.web_sites import open_site


def test_every_page_answers_with_its_content_and_the_csp(site):
    dark = make_record(filename="dark_a.fits", datetime_obs="2024-03-01T10:00:00")
    flat = make_record(filename="flat_a.fits", cal_type="flat", datetime_obs="2024-03-02")
    site.add([dark, flat])
    pages = {
        "/": "hispec",
        "/hispec/": "flat_a.fits",
        "/hispec/browse": "dark_a.fits",
        f"/hispec/records/{dark['id']}": f"koa-cal --instrument hispec get {dark['id']}",
        "/hispec/changes": "changes" if site.is_archive else "the changes feed is the archive",
        "/static/style.css": "focus",
    }
    for path, expected in pages.items():
        response = site.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-security-policy"] == CSP
        assert CSP.startswith("default-src 'self'")
        assert expected in response.text, path
        if path != "/static/style.css":
            assert '<html lang="en">' in response.text
            assert 'href="#main">Skip to content' in response.text
            assert "<script" not in response.text  # no script at all, inline or not
    for path in ("/nope/", "/hispec/records/not-an-id", "/hispec/browse?sort=evil"):
        response = site.get(path)
        assert response.status_code in (400, 404), path
        assert response.headers["content-security-policy"] == CSP
        assert "Error" in response.text


def test_record_page_shows_every_column_the_file_and_the_version_family(site):
    first = make_record(filename="arc_v1.fits", cal_type="arc", spectrograph="yJ",
                        instrument_era="era1", file_md5="0" * 32, file_size=1234)  # fmt: skip
    second = dict(first, id=make_record()["id"], filename="arc_v2.fits", cal_version="002")
    other = make_record(filename="arc_hk.fits", cal_type="arc", spectrograph="HK",
                        instrument_era="era1")  # fmt: skip
    site.add([first, second, other])
    html = site.get(f"/hispec/records/{first['id']}").text
    assert "1234 bytes" in html and "0" * 32 in html
    assert '<th scope="row">spectrograph</th><td>yJ</td>' in html
    family = html.split('id="family-title"', 1)[1].split("</table>", 1)[0]
    assert "arc_v1.fits (this record)" in family and "arc_v2.fits" in family
    assert "arc_hk.fits" not in family  # another spectrograph: another family
    if site.is_archive:
        assert "Published" in html  # the history from the catalog's lifecycle fields


def test_keyset_pagination_walks_every_record_once_in_order(site):
    # Several records share a time, so the id breaks ties across page boundaries.
    times = [f"2024-{1 + n // 84:02d}-{1 + n // 3 % 28:02d}T00:00:00" for n in range(130)]
    batch = [
        make_record(filename=f"dark_{n:03d}.fits", datetime_obs=t) for n, t in enumerate(times)
    ]
    site.add(batch)
    for sort, order in (("datetime_obs", "desc"), ("filename", "asc")):
        url = f"/hispec/browse?sort={sort}&order={order}&limit=25"
        seen, pages = [], 0
        while url:
            html = site.client.get(site.base + url if url.startswith("/hispec") else url).text
            assert "<strong>130</strong> record(s) match" in html
            seen += row_files(html)
            pages += 1
            following = links(html, "Next page")
            assert all("offset" not in link for link in following)
            url = following[0] if following else None
        assert pages == 6
        assert sorted(seen) == sorted(r["filename"] for r in batch)  # each once
        if sort == "filename":
            assert seen == sorted(seen)
        else:
            by_name = {r["filename"]: r["datetime_obs"] for r in batch}
            times = [by_name[name] for name in seen]
            assert times == sorted(times, reverse=True)


def test_filters_are_get_parameters_named_as_in_the_api(site):
    site.add([
        make_record(filename="d1.fits", datetime_obs="2024-01-05"),
        make_record(filename="d2.fits", datetime_obs="2024-01-20", cal_version="002"),
        make_record(filename="f1.fits", cal_type="flat", datetime_obs="2024-01-06"),
        make_record(filename="d3.fits", datetime_obs="2024-01-07", origin="LOCAL"),
    ])  # fmt: skip
    cases = [
        ({"cal_type": "dark"}, {"d1.fits", "d2.fits", "d3.fits"}),
        ({"date_time_start": "2024-01-06", "date_time_end": "2024-01-10"}, {"f1.fits", "d3.fits"}),
        ({"origin": "local"}, {"d3.fits"}),
        ({"cal_version_min": "2"}, {"d2.fits"}),
    ]
    for params, expected in cases:
        html = site.get("/hispec/browse", **params).text
        assert set(row_files(html)) == expected, params
        assert f"<strong>{len(expected)}</strong>" in html
        twin = links(html, "CSV")[0]
        rows = list(csv.DictReader(io.StringIO(site.client.get(twin).text)))
        assert {row["filename"] for row in rows} == expected
        twin = links(html, "JSON")[0]
        found = json.loads(site.client.get(twin).text)["records"]
        assert {r["filename"] for r in found} == expected
        if site.is_archive:  # the same parameters on the API give the same records
            api = links(html, "the API's query")[0]
            assert {r["filename"] for r in site.client.get(api).json()} == expected
    bad = site.get("/hispec/browse", date_time_start="yesterday")
    assert bad.status_code == 400 and "date_time_start" in bad.text


def test_a_retraction_shows_on_every_page_it_concerns(site):
    keep = make_record(filename="flat_keep.fits", cal_type="flat", datetime_obs="2024-05-01")
    bad = make_record(filename="flat_bad.fits", cal_type="flat", datetime_obs="2024-05-02")
    newer = dict(bad, id=make_record()["id"], filename="flat_bad_v2.fits", cal_version="002")
    site.add([keep, bad, newer])
    site.retract(bad["id"], "hot pixels in row 4")
    hidden = site.get("/hispec/browse").text
    assert "flat_bad.fits" not in row_files(hidden) and "flat_keep.fits" in row_files(hidden)
    shown = site.get("/hispec/browse", include_retracted="1").text
    assert "flat_bad.fits" in row_files(shown)
    assert "Retracted</span>" in shown and "hot pixels in row 4" in shown
    record = site.get(f"/hispec/records/{bad['id']}").text
    assert "<strong>Retracted</strong>" in record and "hot pixels in row 4" in record
    assert "<strong>Retracted</strong> " in record.split('id="history-title"', 1)[1]
    family = site.get(f"/hispec/records/{newer['id']}").text.split('id="family-title"', 1)[1]
    assert "flat_bad.fits" in family and "hot pixels in row 4" in family
    overview = site.get("/hispec/").text
    assert re.search(r"flat</a></th>\s*<td>KECK</td><td>2</td>\s*<td><a [^>]*>1</a>", overview)
    assert "flat_bad.fits" not in overview.split('id="newest-title"', 1)[1].split("</table>")[0]
    if site.is_archive:
        changes = site.get("/hispec/changes").text
        assert '<span class="flag">Retracted</span>' in changes and "hot pixels in row 4" in changes
        last_seq = max(int(s) for s in re.findall(r"since=(\d+)\">\d+</a>", changes)) + 1
        later = site.get("/hispec/changes", since=str(last_seq - 1)).text
        assert "flat_bad.fits" in later and "flat_keep.fits" not in later


def test_overview_coverage_map_flags_gaps_with_text_and_a_table(site):
    nights = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-20"]
    site.add([make_record(filename=f"d{n}.fits", datetime_obs=night)
              for n, night in enumerate(nights)])  # fmt: skip
    html = site.get("/hispec/", gap_nights="7").text
    assert "<svg" in html and 'role="img"' in html
    assert "gap: dark without records from 2024-01-04 to 2024-01-19 (16 nights)" in html
    assert "1 gap(s) longer than 7 nights" in html  # the text summary
    assert '<span class="flag">Gap:</span> 2024-01-04 to 2024-01-19 (16 nights)' in html
    assert "dark on 4 nights (4 records)" in html
    wide = site.get("/hispec/", gap_nights="30").text
    assert "No gap longer than 30 nights" in wide


def test_the_ui_stays_out_of_the_openapi_document(tmp_path):

    with open_site("sqlite", tmp_path) as site:
        paths = site.client.get("/openapi.json").json()["paths"]
        assert paths and not any(path.startswith("/ui") for path in paths)
        assert all(path.startswith("/api/calibrations") for path in paths)

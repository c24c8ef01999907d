"""Browse filters on any column of the records, named as in the API's ``query``."""

from __future__ import annotations

import csv
import io
import json
import re
from html import unescape

from support.archive import make_record
from support.web_html import links, row_files


def add_spectrograph_records(site) -> None:
    site.add([
        make_record(filename="yj_a.fits", spectrograph="yJ", exptime=30.0),
        make_record(filename="yj_b.fits", spectrograph="yJ", exptime=60.0, cal_type="flat"),
        make_record(filename="hk_a.fits", spectrograph="HK", exptime=30.0),
        make_record(filename="plain.fits"),
    ])  # fmt: skip


def test_any_column_filters_the_page_its_twins_and_the_api_alike(site):
    add_spectrograph_records(site)
    cases = [
        ({"spectrograph": "yJ"}, {"yj_a.fits", "yj_b.fits"}),
        ({"spectrograph": "yJ", "cal_type": "dark"}, {"yj_a.fits"}),
        ({"exptime": "30"}, {"yj_a.fits", "hk_a.fits"}),  # compared as a number too
        ({"filename": "plain.fits"}, {"plain.fits"}),
        ({"where.column": "spectrograph", "where.value": "HK"}, {"hk_a.fits"}),  # the form
        ({"where.column": "SPECTROGRAPH", "where.value": "HK"}, {"hk_a.fits"}),  # any case
        ({"spectrograph": "nope"}, set()),
    ]
    for params, expected in cases:
        page = site.get("/hispec/browse", **params)
        assert page.status_code == 200, (params, page.text[-500:])
        html = page.text
        assert set(row_files(html)) == expected, params
        assert f"<strong>{len(expected)}</strong> record(s) match" in html
        csv_link, json_link = links(html, "CSV")[0], links(html, "JSON")[0]
        # Every link spells a column filter the API's way: the column's name.
        assert "where." not in csv_link + json_link
        if "where.column" in params:
            assert "spectrograph=HK" in csv_link
        rows = list(csv.DictReader(io.StringIO(site.client.get(csv_link).text)))
        assert {row["filename"] for row in rows} == expected, params
        found = json.loads(site.client.get(json_link).text)["records"]
        assert {r["filename"] for r in found} == expected, params
        if site.is_archive and expected:
            api = links(html, "the API's query")[0]
            assert {r["filename"] for r in site.client.get(api).json()} == expected, params


def test_the_form_offers_every_column_and_keeps_the_filters_in_force(site):
    add_spectrograph_records(site)
    html = site.get("/hispec/browse", spectrograph="yJ").text
    form = html.split('class="filters"', 1)[1].split("</form>", 1)[0]
    options = [unescape(o) for o in re.findall(r'<option value="([^"]*)"', form)]
    assert {"spectrograph", "exptime", "filename", "cal_type", "id"} <= set(options)
    assert '<select id="f-where" name="where.column">' in form
    assert '<input id="f-where-value" name="where.value">' in form
    assert 'name="spectrograph" value="yJ"' in form  # the filter in force, to edit or clear
    assert '<label for="f-col-1">spectrograph</label>' in form


def test_an_unknown_or_hostile_column_is_refused_with_a_clear_400(site):
    add_spectrograph_records(site)
    cases = {
        "/hispec/browse?colour=red": "No column 'colour' in these records; filter on one of",
        "/hispec/browse.csv?colour=red": "No column 'colour'",
        "/hispec/browse.json?colour=red": "No column 'colour'",
        "/hispec/browse?where.column=colour&where.value=red": "No column 'colour'",
        '/hispec/browse?x"%3B drop table records--=1': "is not a column name",
        "/hispec/browse?%3Cscript%3Ealert(1)%3C/script%3E=1": "is not a column name",
        "/hispec/browse?where.column=spectrograph": "where.value is empty",
        "/hispec/browse?where.value=yJ": "where.value is given without where.column",
        "/hispec/browse?cal_type=dark&where.column=cal_type&where.value=flat": (
            "cal_type is given two different values"
        ),
        "/hispec/browse?file_size=big": "file_size must be a whole number",
        "/hispec/browse?id=not-an-id": "id:",
    }
    for path, message in cases.items():
        response = site.client.get(site.base + path)
        assert response.status_code == 400, (path, response.text[-300:])
        assert message in unescape(response.text), (path, response.text[-600:])
        assert "<script>" not in response.text
    listed = unescape(site.get("/hispec/browse", colour="red").text)
    assert "spectrograph" in listed and "exptime" in listed  # the columns one may use
    # The records are still there: nothing reached SQL as a name.
    assert "<strong>4</strong>" in site.get("/hispec/browse").text

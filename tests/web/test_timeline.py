"""The timeline page over the archive's catalog (SQLite, PostgreSQL) and over a local cache."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

from koa_middleware.web import CSP
from koa_middleware.web.timeline import MAX_MARKS
from support.archive import make_record
from support.bulk_records import bulk_add, many_records
from support.web_html import links

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
ESC = "\x1b[2Jwiped"
#: A mark: its link, its shape, where it is, and its label.
MARK = re.compile(
    r'<a href="([^"]+)"><use href="#tl-(live|retracted)" x="([\d.]+)" y="([\d.]+)" '
    r'class="(?:live|retracted)"/><title>([^<]*)</title></a>'
)
#: A bar: its zoom link and its label (the retracted part, when any, inside).
BAR = re.compile(r'<a href="([^"]+)"><rect [^>]*class="bar"/>(.*?)<title>([^<]*)</title></a>')


def svg_of(html: str) -> str:
    """The timeline's SVG element."""
    return html[html.index('<svg class="timeline"') : html.index("</svg>") + 6]


def marks(html: str) -> list[tuple[str, str, float, str]]:
    """``(record link, shape, y, label)`` of every mark of the SVG."""
    return [(unescape(h), shape, float(y), unescape(t))
            for h, shape, _, y, t in MARK.findall(svg_of(html))]  # fmt: skip


def summary_total(html: str) -> int:
    """The number of calibrations the text summary states."""
    return int(re.search(r'id="timeline-summary" role="status"><strong>(\d+)</strong>', html)[1])


def assert_harmless(html: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered and "<img" not in lowered
    assert "\x1b" not in html


def add_two_spectrographs(site) -> dict[str, dict]:
    """Darks and flats of both spectrographs; one yJ dark retracted."""
    found = {}
    for n, (cal_type, spectrograph) in enumerate(
        [("dark", "yJ"), ("dark", "yJ"), ("flat", "yJ"), ("dark", "HK"), ("arc", "HK")]
    ):
        found[f"{cal_type}_{spectrograph}_{n}"] = make_record(
            filename=f"{cal_type}_{spectrograph}_{n}.fits",
            cal_type=cal_type,
            spectrograph=spectrograph,
            instrument_era="era1",
            datetime_obs=f"2024-02-{1 + 3 * n:02d}T12:00:00",
        )
    site.add(list(found.values()))
    site.retract(found["dark_yJ_1"]["id"], "hot pixels")
    return found


def test_one_lane_per_type_in_each_facet_each_mark_linking_to_its_record(site):
    records = add_two_spectrographs(site)
    response = site.get("/hispec/timeline", include_retracted="1")
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CSP
    html = response.text
    assert "<script" not in html and " style=" not in html
    svg = svg_of(html)
    # Facets: the profile's family columns; lanes: the types of each facet.
    assert "spectrograph HK · instrument_era era1</text>" in svg
    assert "spectrograph yJ · instrument_era era1</text>" in svg
    hk, yj = svg.split("spectrograph HK", 1)[1].split("spectrograph yJ", 1)
    assert re.findall(r'class="label">([^<]*)<', hk) == ["arc", "dark"]
    assert re.findall(r'class="label">([^<]*)<', yj) == ["dark", "flat"]
    drawn = marks(html)
    assert len(drawn) == 5
    by_file = {
        label.split(": ", 1)[1].split(",")[0]: (link, shape, y) for link, shape, y, label in drawn
    }
    for name, record in records.items():
        link, shape, _ = by_file[f"{name}.fits"]
        assert link == f"/ui/hispec/records/{record['id']}"
        page = site.client.get(link)
        assert page.status_code == 200 and f"{name}.fits" in page.text
    # A lane is a row: marks of one lane share it, other lanes are elsewhere.
    assert by_file["dark_yJ_0.fits"][2] == by_file["dark_yJ_1.fits"][2]
    assert len({by_file[f"{n}.fits"][2] for n in records}) == 4
    # Retracted: another shape (a cross, not a circle), and said in words.
    assert by_file["dark_yJ_1.fits"][1] == "retracted"
    assert {shape for name, (_, shape, _) in by_file.items() if name != "dark_yJ_1.fits"} == {
        "live"
    }
    assert '<circle id="tl-live"' in svg and '<path id="tl-retracted"' in svg
    assert "RETRACTED</title>" in svg
    assert '<span class="flag">Retracted</span>' in html.split("</svg>", 1)[1]
    # Accessible: named and described (a group, as its marks are links), a summary, tables.
    assert 'role="group" aria-labelledby="tl-title" aria-describedby="tl-desc"' in svg
    assert (
        '<title id="tl-title">' in svg and '<desc id="tl-desc">5 calibrations, 1 retracted' in svg
    )
    assert "<strong>5</strong> calibration(s) of hispec" in html
    assert "<caption>Calibrations per lane</caption>" in html
    assert "<caption>Each calibration of the timeline, by time</caption>" in html
    hidden = site.get("/hispec/timeline").text  # retracted ones hidden by default
    assert len(marks(hidden)) == 4 and "dark_yJ_1.fits" not in hidden


def test_the_timeline_is_linked_from_the_overview_and_the_navigation(site):
    add_two_spectrographs(site)
    overview = site.get("/hispec/").text
    assert "/ui/hispec/timeline" in links(overview, "the timeline of hispec")
    assert "/ui/hispec/timeline" in links(overview, "Timeline")
    page = site.get("/hispec/timeline").text
    assert '<a href="/ui/hispec/timeline" aria-current="page">Timeline</a>' in page
    empty = site.get("/hispec/timeline", cal_type="nothing")
    assert empty.status_code == 200 and "No calibration matches these filters" in empty.text


def test_filters_round_trip_through_the_url_and_the_browse_link(site):
    add_two_spectrographs(site)
    params = {
        "cal_type": "dark",
        "origin": "keck",
        "date_time_start": "2024-02-01",
        "date_time_end": "2024-02-28",
        "spectrograph": "yJ",
        "include_retracted": "1",
    }
    html = site.get("/hispec/timeline", **params).text
    form = html.split('class="filters"', 1)[1].split("</form>", 1)[0]
    for field in ('name="cal_type" value="dark"', 'name="origin" value="KECK"',
                  'name="date_time_start" value="2024-02-01T00:00:00.000"',
                  'name="date_time_end" value="2024-02-28T00:00:00.000"',
                  'name="spectrograph" value="yJ"', 'value="1" checked'):  # fmt: skip
        assert field in form, field
    shown = {label.split(": ", 1)[1].split(",")[0] for *_, label in marks(html)}
    assert shown == {"dark_yJ_0.fits", "dark_yJ_1.fits"}
    permalink = links(html, "this timeline")[0]
    wanted = {k: [v] for k, v in params.items()}
    wanted.update(origin=["KECK"], date_time_start=["2024-02-01T00:00:00.000"],
                  date_time_end=["2024-02-28T00:00:00.000"])  # fmt: skip
    assert parse_qs(urlsplit(permalink).query) == wanted
    again = site.client.get(permalink).text
    assert marks(again) == marks(html)
    browse = site.client.get(links(html, "browse them")[0]).text
    assert set(re.findall(r'<th scope="row"><a href="[^"]*">([^<]*)</a>', browse)) == shown
    # The same form pair as the browse page, and the same refusals.
    paired = site.get("/hispec/timeline", **{"where.column": "spectrograph", "where.value": "HK"})
    assert {label.split(": ")[0] for *_, label in marks(paired.text)} == {"dark", "arc"}
    unknown = site.get("/hispec/timeline", colour="red")
    assert unknown.status_code == 400 and "No column &#39;colour&#39;" in unknown.text
    bad = site.get("/hispec/timeline", date_time_start="yesterday")
    assert bad.status_code == 400 and "date_time_start" in bad.text
    backwards = site.get(
        "/hispec/timeline", date_time_start="2024-03-01", date_time_end="2024-02-01"
    )
    assert backwards.status_code == 400
    assert "date_time_start must come before date_time_end" in backwards.text


def test_hostile_values_are_escaped_in_the_svg_and_the_tables(site):
    hostile = make_record(filename=IMG + ".fits", cal_type=SCRIPT, spectrograph=SCRIPT + IMG,
                          instrument_era="era1", datetime_obs="2024-06-01")  # fmt: skip
    other = make_record(filename="plain.fits", spectrograph="yJ", datetime_obs="2024-06-02")
    site.add([hostile, other])
    site.set_text(other["id"], "instrument_era", ESC)
    for path in ("/hispec/timeline", f"/hispec/timeline?cal_type={SCRIPT}",
                 "/hispec/timeline?spectrograph=%22%3E%3Cimg%20src%3Dx%3E"):  # fmt: skip
        response = site.client.get(site.base + path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CSP
        assert_harmless(response.text)
    html = site.get("/hispec/timeline").text
    svg, tables = svg_of(html), html.split("</svg>", 1)[1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg  # the lane label and mark label
    assert "spectrograph &lt;script&gt;" in svg  # the facet heading
    assert "instrument_era \\x1b[2Jwiped" in svg  # the escape shown, not sent
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img" in tables
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;.fits</a>" in tables
    lane_links = links(html, "timeline")
    assert any(parse_qs(urlsplit(link).query).get("cal_type") == [SCRIPT] for link in lane_links)


def test_past_the_threshold_marks_become_bins_whose_links_narrow_the_view(site):
    batch = many_records(MAX_MARKS + 1, ["dark", SCRIPT], {"spectrograph": ["yJ", IMG]})
    bulk_add(site, batch)
    site.retract(batch[0]["id"], "bad")
    at_most = site.get("/hispec/timeline")  # the retracted one hidden: exactly the threshold
    assert summary_total(at_most.text) == MAX_MARKS and len(marks(at_most.text)) == MAX_MARKS
    html = site.get("/hispec/timeline", include_retracted="1").text
    assert_harmless(html)
    assert summary_total(html) == MAX_MARKS + 1
    assert marks(html) == [] and "/records/" not in svg_of(html)
    assert f"More than {MAX_MARKS} to draw one by one" in html
    bars = BAR.findall(svg_of(html))
    counts = [int(re.match(r"[^:]*: (\d+) from", unescape(title))[1]) for _, _, title in bars]
    assert sum(counts) == MAX_MARKS + 1
    # The retracted one is hatched (a shape), and said in the bar's label.
    hatched = [title for _, inner, title in bars if 'class="bar-retracted"' in inner]
    assert len(hatched) == 1 and "1 retracted" in hatched[0]
    # A bar's link shows the calibrations of its lane and bin: as many as it counts.
    link, _, title = bars[0]
    zoomed = site.client.get(unescape(link))
    assert zoomed.status_code == 200
    assert summary_total(zoomed.text) == counts[0]
    assert len(marks(zoomed.text)) == counts[0]


def test_a_hundred_thousand_records_draw_under_500_kb(site):
    types = ["bias", "dark", "flat", "arc", "wavecal", "trace", "badpix"]
    batch = many_records(100_000, types, {"spectrograph": ["yJ", "HK"], "instrument_era":
                                          ["era1", "era2", "era3"]})  # fmt: skip
    bulk_add(site, batch)
    response = site.get("/hispec/timeline")
    assert response.status_code == 200
    svg = svg_of(response.text)
    assert len(svg.encode()) < 500_000, len(svg.encode())
    assert summary_total(response.text) == 100_000
    assert "in 42 lane(s): one per cal_type for each spectrograph and instrument_era" in (
        response.text
    )
    titles = [unescape(title) for _, _, title in BAR.findall(svg)]
    # Lanes run HK before yJ, era1 to era3, types by name: the last two are not drawn,
    # only counted in the lane table.
    hidden = [r for r in batch if (r["spectrograph"], r["instrument_era"]) == ("yJ", "era3")
              and r["cal_type"] in ("trace", "wavecal")]  # fmt: skip
    drawn = sum(int(re.match(r"[^:]*: (\d+) from", t)[1]) for t in titles)
    assert drawn == 100_000 - len(hidden) and hidden
    assert "2 lane(s) past the first 40 are not drawn" in response.text
    lane_table = response.text.split("<caption>Calibrations per lane", 1)[1].split("</table>")[0]
    assert lane_table.count('<th scope="row">wavecal</th>') == 6  # all 42 lanes listed


def test_lanes_past_forty_are_listed_but_not_drawn(site):
    site.add([make_record(filename=f"t{n:02d}.fits", cal_type=f"type{n:02d}",
                          spectrograph="yJ", datetime_obs=f"2024-01-{1 + n % 28:02d}")
              for n in range(43)])  # fmt: skip
    html = site.get("/hispec/timeline").text
    assert "3 lane(s) past the first 40 are not drawn" in html
    labels = re.findall(r'class="label">([^<]*)<', svg_of(html))
    assert labels == [f"type{n:02d}" for n in range(40)]
    assert len(marks(html)) == 40  # one per drawn lane
    table = html.split("<caption>Each calibration of the timeline", 1)[1].split("</table>")[0]
    assert all(f"t{n:02d}.fits" in table for n in range(43))  # every mark in the table


def test_kept_lanes_and_bins_follow_a_publication_and_a_retraction(site):
    """The lanes and bars are kept between loads, and every change shows at once."""
    batch = many_records(MAX_MARKS + 1, ["dark"], {"spectrograph": ["yJ"]})
    bulk_add(site, batch)
    view = {"include_retracted": "1"}
    first = site.get("/hispec/timeline", **view).text
    assert summary_total(first) == MAX_MARKS + 1
    assert not [t for _, inner, t in BAR.findall(svg_of(first)) if "bar-retracted" in inner]
    assert site.get("/hispec/timeline", **view).text == first  # kept: the same answer
    site.add([make_record(filename="flat_new.fits", cal_type="flat", spectrograph="yJ")])
    site.retract(batch[0]["id"], "bad")
    after = site.get("/hispec/timeline", **view).text
    assert summary_total(after) == MAX_MARKS + 2
    hatched = [t for _, inner, t in BAR.findall(svg_of(after)) if "bar-retracted" in inner]
    assert len(hatched) == 1 and "1 retracted" in hatched[0]
    assert summary_total(site.get("/hispec/timeline").text) == MAX_MARKS + 1

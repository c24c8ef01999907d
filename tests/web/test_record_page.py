"""The record page over the archive (SQLite, PostgreSQL) and a local cache: version diff,
FITS header, resumable download, hostile values."""

from __future__ import annotations

import gzip
import re
import shlex
from html import unescape
from urllib.parse import unquote

import pytest
from starlette.testclient import TestClient

from koa_middleware.archive.app import create_app
from koa_middleware.archive.state import ArchiveSettings
from koa_middleware.archive.storage import open_storage
from koa_middleware.errors import InvalidRecordError
from koa_middleware.web import CSP, TokenGate, create_ui
from koa_middleware.web.catalog_reader import CatalogReader
from support.archive import make_record
from support.web_files import fits_file, store_file, with_file, write_token
from support.web_sites import Site, open_site

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
ESC = "\x1b[2Jwiped"


def section(html: str, title_id: str) -> str:
    """The text of the page's section whose heading has id ``title_id``."""
    return html.split(f'id="{title_id}"', 1)[1].split("</section>", 1)[0]


def cells(html: str) -> list[list[str]]:
    """The rows of the tables in ``html``, each a list of its cells' text, unescaped."""
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    return [[unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)] for r in rows]


def three_versions(site):
    """A family of three darks differing in ``gain``; v3 is retracted."""
    first = make_record(filename="dark_v1.fits", spectrograph="yJ", instrument_era="era1", gain=2)
    second = dict(first, id=make_record()["id"], filename="dark_v2.fits", cal_version="002",
                  gain=3, note="refit")  # fmt: skip
    third = dict(first, id=make_record()["id"], filename="dark_v3.fits", cal_version="003")
    site.add([first, second, third])
    site.retract(third["id"], "bad bias")
    return first, second, third


def test_diff_of_two_versions_lists_the_columns_that_differ_with_a_permalink(site):
    first, second, third = three_versions(site)
    page = site.get(f"/hispec/records/{first['id']}")
    assert page.headers["content-security-policy"] == CSP
    family = section(page.text, "family-title")
    assert 'name="a"' in family and 'name="b"' in family  # the two selects
    link = f"/ui/hispec/records/{first['id']}?diff={first['id']}%2C{second['id']}"
    assert link in family  # each other version links a diff with this record
    response = site.get(f"/hispec/records/{first['id']}", diff=f"{first['id']},{second['id']}")
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CSP
    diff = section(response.text, "diff-title")
    rows = {row[0]: row[1:] for row in cells(diff) if len(row) == 3}
    assert rows["gain"] == ["2", "3"]
    assert rows["cal_version"] == ["001", "002"]
    assert rows["filename"] == ["dark_v1.fits", "dark_v2.fits"]
    assert rows["note"] == ["(absent)", "refit"]
    assert "spectrograph" not in rows and "cal_type" not in rows  # the same in both
    assert f"diff={first['id']}%2C{second['id']}" in diff  # the permalink
    # The selects send a and b: the page answers with the permalink.
    chosen = site.get(f"/hispec/records/{first['id']}", a=second["id"], b=third["id"])
    assert chosen.status_code == 303
    target = unquote(chosen.headers["location"])
    assert target.endswith(f"?diff={second['id']},{third['id']}#diff-title")
    later = site.client.get(target.split("#")[0]).text
    rows = {row[0]: row[1:] for row in cells(section(later, "diff-title")) if len(row) == 3}
    assert rows["retract_reason"] == ["", "bad bias"]  # empty while live, not absent


def test_a_diff_names_two_versions_of_the_family_or_is_refused(site):
    first, second, _ = three_versions(site)
    stranger = make_record(filename="flat.fits", cal_type="flat")
    site.add([stranger])
    assert site.get(f"/hispec/records/{first['id']}", a=first["id"], b=IMG).status_code == 400
    for wanted in (f"{first['id']},{stranger['id']}", "nonsense", f"{first['id']}",
                   f"{first['id']},{second['id']}" + " " * 60_000,
                   f"{first['id']},{second['id']},{second['id']}", SCRIPT + "," + IMG):  # fmt: skip
        response = site.get(f"/hispec/records/{first['id']}", diff=wanted)
        assert response.status_code == 400, wanted
        assert "choose them in the version table" in response.text
        assert response.headers["content-security-policy"] == CSP
        assert "<script" not in response.text and "<img" not in response.text


def test_fits_header_is_shown_as_a_table_and_diffed_between_versions(site):
    v1 = fits_file([("EXPTIME", 30, "seconds"), ("OBJECT", "it's / dark", "with a slash"),
                    ("HISTORY", None, "made by the DRP"), ("GAIN", 2.5)],
                   data=b"\1" * 5000)  # fmt: skip
    v2 = fits_file([("EXPTIME", 60, "seconds"), ("OBJECT", "it's / dark", "with a slash"),
                    ("HISTORY", None, "made by the DRP"), ("HISTORY", None, "refit"),
                    ("READMODE", "CDS")])  # fmt: skip
    first = store_file(site, make_record(filename="dark_h1.fits"), v1)
    second = store_file(site, dict(first, id=make_record()["id"], filename="dark_h2.fits",
                                   cal_version="002"), v2)  # fmt: skip
    page = site.get(f"/hispec/records/{first['id']}").text
    header = cells(section(page, "header-title"))
    assert ["SIMPLE", "T", ""] in header and ["BITPIX", "8", ""] in header
    assert ["EXPTIME", "30", "seconds"] in header
    assert ["OBJECT", "it's / dark", "with a slash"] in header  # quotes and '/' in a string
    assert ["HISTORY", "made by the DRP", ""] in header
    assert ["GAIN", "2.5", ""] in header
    assert "Primary header of dark_h1.fits (7 cards)" in page
    diffed = site.get(f"/hispec/records/{first['id']}", diff=f"{first['id']},{second['id']}")
    tables = section(diffed.text, "diff-title").split("FITS header cards that differ", 1)
    assert len(tables) == 2
    rows = {row[0]: row[1:] for row in cells(tables[1]) if len(row) == 3}
    assert rows["EXPTIME"] == ["30", "60"]
    assert rows["GAIN"] == ["2.5", "(absent)"] and rows["READMODE"] == ["(absent)", "CDS"]
    assert rows["HISTORY"] == ["(absent)", "refit"]  # the second HISTORY card
    assert "OBJECT" not in rows and "SIMPLE" not in rows


def test_a_file_that_is_not_fits_or_not_there_is_said_so(site):
    text = store_file(site, make_record(filename="notes.txt", cal_type="notes"), b"hello\n" * 100)
    packed = store_file(site, make_record(filename="dark.fits.gz"), gzip.compress(fits_file([])))
    bare = make_record(filename="dark_nofile.fits")
    site.add([bare])
    page = site.get(f"/hispec/records/{text['id']}").text
    assert "The file is not a FITS file: it has no FITS header." in section(page, "header-title")
    page = site.get(f"/hispec/records/{packed['id']}").text
    assert "The file is compressed (gzip)" in section(page, "header-title")
    page = site.get(f"/hispec/records/{bare['id']}").text
    assert "This site holds no file for this record" in section(page, "header-title")
    assert "curl" not in page  # nothing to download from here


def test_a_header_without_end_is_read_to_36_blocks_only(site):
    many = [("KEY" + str(n), n) for n in range(40 * 36)]
    data = fits_file(many, data=b"\0" * 200_000, end=False)
    record = store_file(site, make_record(filename="dark_long.fits"), data)
    page = site.get(f"/hispec/records/{record['id']}").text
    assert "No END card in the first 36 blocks (1296 cards)" in page
    header = cells(section(page, "header-title"))
    assert ["KEY1292", "1292", ""] in header and not any(r[0] == "KEY1293" for r in header)


def test_download_link_answers_range_requests_and_the_commands_are_quoted(site):
    data = fits_file([("EXPTIME", 30)], data=bytes(range(256)) * 40)
    name = "dark it's $HOME.fits"
    record = store_file(site, make_record(filename=name), data)
    page = site.get(f"/hispec/records/{record['id']}")
    link = unescape(re.search(r'<a href="([^"]+)" download>', page.text).group(1))
    if site.is_archive:
        assert link == f"/api/calibrations/hispec/files/{record['id']}"
    else:
        assert link == f"/ui/hispec/files/{record['id']}"
    whole = site.client.get(link)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    part = site.client.get(link, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert part.content == data[100:200]
    rest = site.client.get(link, headers={"Range": f"bytes={len(data) - 10}-"})
    assert rest.status_code == 206 and rest.content == data[-10:]
    past = site.client.get(link, headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416
    listed = re.findall(r"<li><code>(.*?)</code></li>", section(page.text, "file-title"), re.S)
    commands = [unescape(c) for c in listed]
    assert commands[0] == f"koa-cal --instrument hispec get {record['id']}"
    url = f"http://testserver{link}"
    assert commands[1] == f"curl -C - -o {shlex.quote(name)} {shlex.quote(url)}"
    assert shlex.split(commands[1]) == ["curl", "-C", "-", "-o", name, url]


def test_cache_file_route_serves_only_intact_files_inside_the_cache(tmp_path):
    with open_site("cache", tmp_path) as site:
        outside = tmp_path / "secret.fits"
        outside.write_bytes(b"SECRET" * 100)
        record = with_file(make_record(filename="dark_link.fits"), outside.read_bytes())
        site.add([record])
        site.backend.layout.path_for(record["filename"]).symlink_to(outside)
        response = site.get(f"/hispec/files/{record['id']}")
        assert response.status_code == 404 and b"SECRET" not in response.content
        assert response.headers["content-security-policy"] == CSP
        page = site.get(f"/hispec/records/{record['id']}").text
        assert "SECRET" not in page
        changed = store_file(site, make_record(filename="dark_changed.fits"), b"A" * 3000)
        site.backend.layout.path_for(changed["filename"]).write_bytes(b"B" * 3000)
        assert site.get(f"/hispec/files/{changed['id']}").status_code == 404  # not its MD5
        assert site.get(f"/hispec/files/{make_record()['id']}").status_code == 404
        assert site.get("/hispec/files/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_hostile_values_in_columns_and_header_cards_are_escaped_and_cut(site):
    data = fits_file([("OBJECT", SCRIPT), ("OBSERVER", IMG), ("URL", "javascript:alert(3)"),
                      ("COMMENT", None, "\x1b[2Jwiped")])  # fmt: skip
    record = store_file(site, make_record(filename="dark_hostile.fits"), data)
    sibling = dict(record, id=make_record()["id"], filename="dark_sib.fits", cal_version="002")
    site.add([sibling])
    site.set_text(record["id"], "huge", "x" * 10_000_000)
    site.set_text(record["id"], "banner", ESC + SCRIPT)
    site.retract(sibling["id"], SCRIPT + " " + IMG)
    for path, params in ((f"/hispec/records/{record['id']}", {}),
                         (f"/hispec/records/{record['id']}",
                          {"diff": f"{record['id']},{sibling['id']}"}),
                         (f"/hispec/records/{sibling['id']}", {})):  # fmt: skip
        response = site.get(path, **params)
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == CSP
        html = response.text
        assert len(html) < 100_000  # the 10 MB column is cut
        assert "<script" not in html.lower() and "<img" not in html.lower()
        assert not re.search(r"(href|src|action)\s*=\s*\"?\s*javascript:", html, re.I)
        assert "\x1b" not in html
    html = site.get(f"/hispec/records/{record['id']}").text
    assert "[cut: 10,000,000 characters in all]" in html
    header = section(html, "header-title")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in header
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in header
    assert "\\x1b[2Jwiped" in header and "<td>javascript:alert(3)</td>" in header


def test_a_10_mb_file_name_never_becomes_a_record(site):
    huge = make_record(filename="d" * 10_000_000 + ".fits")
    if site.is_archive:
        token = write_token(site)
        response = site.client.post(
            "/api/calibrations/hispec/add", json=huge, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code in (400, 413), response.status_code
        assert len(response.content) < 10_000
    else:
        with pytest.raises(InvalidRecordError, match="file name"):
            site.add([huge])
    assert site.get("/hispec/browse").text.count("ddddd") == 0


def test_header_and_ranges_of_a_file_in_s3_storage(tmp_path, s3_bucket):
    settings = ArchiveSettings(root=tmp_path / "archive", instruments=("hispec",),
                               anonymous_read=True)  # fmt: skip
    storage = open_storage(s3_bucket.url, settings.root, s3_bucket.endpoint.url)
    app = create_app(settings, storage=storage)
    site = Site("sqlite", app, "/ui", app.state.archive.catalog)
    try:
        data = fits_file([("EXPTIME", 45, "seconds"), ("OBJECT", SCRIPT)], data=b"\7" * 9000)
        record = store_file(site, make_record(filename="dark_s3.fits"), data)
        assert s3_bucket.read(s3_bucket.key("hispec", record["id"])) == data
        page = site.get(f"/hispec/records/{record['id']}").text
        header = cells(section(page, "header-title"))
        assert ["EXPTIME", "45", "seconds"] in header and [c[0] for c in header][-1] == "OBJECT"
        assert "&lt;script&gt;" in page and "<script" not in page
        part = site.client.get(f"/api/calibrations/hispec/files/{record['id']}",
                               headers={"Range": "bytes=2880-2899"})  # fmt: skip
        assert part.status_code == 206 and part.content == data[2880:2900]
        assert part.headers["content-range"] == f"bytes 2880-2899/{len(data)}"
    finally:
        app.state.archive.catalog.close()


def test_a_protocol_1_archive_links_its_zip_and_offers_no_resume(tmp_path):
    with open_site("sqlite", tmp_path) as site:
        data = fits_file([("EXPTIME", 30)])
        record = store_file(site, make_record(filename="dark_v1zip.fits"), data)
        archive = site.client.app.state.archive
        reader = CatalogReader(archive.catalog, ["hispec"], protocol=1, storage=archive.storage)
        pages = TestClient(create_ui(reader, TokenGate(lambda token: None, open_reads=True)))
        page = pages.get(f"/hispec/records/{record['id']}").text
        link = f"/api/calibrations/hispec/download?cal_id={record['id']}"
        assert f'<a href="{link}" download>' in unescape(page)
        assert "(a zip holding the file)" in page and "Range requests work" not in page
        lines = [unescape(c) for c in re.findall(r"<li><code>(.*?)</code></li>", page)]
        assert lines[1] == f"curl -o dark_v1zip.fits.zip {shlex.quote('http://testserver' + link)}"
        assert ["EXPTIME", "30", ""] in cells(section(page, "header-title"))

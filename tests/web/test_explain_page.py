"""The explain page of ``koa-cal ui``: the same ranking and choice as ``koa-cal explain``."""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import sys
from html import unescape
from pathlib import Path

import httpx
import pytest

from koa_middleware.manifest import parse_manifest
from koa_middleware.records import validate_record
from koa_middleware.selectors import NearestInTimeSelector
from koa_middleware.web import CSP
from koa_middleware.web.local_tools import LocalTools
from support.archive import make_record
from support.koa_cal import cli_env, koa_cal
from support.web_forms import csrf_of, local_site, rows
from support.web_sites import open_site

fits = pytest.importorskip("astropy.io.fits", reason="writing the test frames needs astropy")

#: The frame as the form's fields give it.
FIELDS = {"datetime_obs": "2024-03-01T06:00:00", "spectrograph": "yJ", "instrument_era": "era1"}
CANDIDATES = "The candidates"


def dark(filename: str, when: str, **fields) -> dict:
    values = {"spectrograph": "yJ", "instrument_era": "era1", "file_md5": "a" * 32,
              "last_updated": "2024-03-05T00:00:00"}  # fmt: skip
    return make_record(
        filename=filename, cal_type="dark", datetime_obs=when, **{**values, **fields}
    )


@pytest.fixture
def darks(tmp_path):
    """``koa-cal ui``'s pages over a cache of five darks, the nearest one retracted."""
    tools = LocalTools(cache_dir=str(tmp_path / "cache"))
    with local_site(tmp_path, tools) as site:
        records = [
            dark("dark_near.fits", "2024-03-01T04:00:00"),
            dark("dark_far.fits", "2024-02-25T00:00:00"),
            dark("dark_mid.fits", "2024-03-02T12:00:00"),
            dark("dark_nearest_bad.fits", "2024-03-01T05:30:00"),
            dark("dark_hk.fits", "2024-03-01T06:00:00", spectrograph="HK"),
        ]
        site.add(records)
        site.retract(records[3]["id"], "hot pixels in quadrant 2")
        yield site


def env_elsewhere(tmp_path: Path) -> dict[str, str]:
    """The command line's environment, with another cache: the copied line must name its own."""
    return cli_env(tmp_path, KOA_CALIBRATION_CACHE=str(tmp_path / "elsewhere"))


def ranked(html: str) -> list[str]:
    """The file names of the candidates table, in rank order."""
    return [row.split()[1] for row in rows(html, CANDIDATES) if row.split()]


def command_of(html: str) -> list[str]:
    """The page's ``koa-cal explain`` command line, split as a shell would."""
    found = re.search(r'<code class="command">(.*?)</code>', html, re.S)
    return shlex.split(unescape(found.group(1)))


def cli_report(tmp_path: Path, *args: str) -> dict:
    """``koa-cal ARGS --json``'s report (the cache given with --cache-dir)."""
    done = koa_cal(*args, "--json", env=env_elsewhere(tmp_path))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_ranking_and_choice_are_those_of_koa_cal_explain(darks, tmp_path):
    page = darks.get("/hispec/explain", selector="nearest", cal_type="dark", **FIELDS)
    assert page.status_code == 200, page.text[-2000:]
    assert page.headers["content-security-policy"] == CSP
    cache = str(tmp_path / "cache")
    meta = [arg for key, value in FIELDS.items() for arg in ("--meta", f"{key}={value}")]
    report = cli_report(tmp_path, "--cache-dir", cache, "explain", "--selector", "nearest",
                        "--option", "cal_type=dark", *meta)  # fmt: skip
    assert ranked(page.text) == [c["filename"] for c in report["candidates"]]
    assert ranked(page.text) == ["dark_near.fits", "dark_mid.fits", "dark_far.fits"]
    chosen = report["chosen"]
    assert f'<a href="/ui/hispec/records/{chosen["id"]}">dark_near.fits</a>' in page.text
    assert unescape(report["reason"]) in unescape(page.text)
    skipped = " ".join(rows(page.text, "Skipped: retracted candidates"))
    assert "dark_nearest_bad.fits" in skipped and "hot pixels in quadrant 2" in skipped
    assert [r["filename"] for r in report["retracted"]] == ["dark_nearest_bad.fits"]
    assert "dark_hk.fits" not in page.text  # another spectrograph: no candidate


def test_the_copied_command_line_reproduces_the_choice(darks, tmp_path):
    params = {"selector": "latest", "cal_type": "dark", "as_of": "2024-12-31", **FIELDS,
              "options": "validity_days=2\nexplain_limit=5",
              "extra": "note=it's a \"quoted\" $HOME"}  # fmt: skip
    page = darks.get("/hispec/explain", **params)
    assert page.status_code == 200, page.text[-2000:]
    command = command_of(page.text)
    assert command[:5] == [
        "koa-cal",
        "--instrument",
        "hispec",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert 'note=it\'s a "quoted" $HOME' in command  # quoted for the shell, kept whole
    assert command[command.index("--as-of") + 1] == "2024-12-31"
    report = cli_report(tmp_path, *command[1:])
    # As of 2024 the nearest dark was not retracted yet: it was the choice then.
    assert report["chosen"]["filename"] == "dark_nearest_bad.fits"
    assert f'/records/{report["chosen"]["id"]}">dark_nearest_bad.fits</a>\n(version' in page.text
    assert ranked(page.text) == [c["filename"] for c in report["candidates"]]
    # Through a shell, as a user pastes it.
    line = shlex.join(command).replace("koa-cal", f"{sys.executable} -m koa_middleware.cli", 1)
    shell = subprocess.run(line + " --json", shell=True, env=env_elsewhere(tmp_path),
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert json.loads(shell.stdout)["chosen"]["id"] == report["chosen"]["id"]


def test_save_as_manifest_pins_the_choice_as_koa_cal_explain_records_it(darks, tmp_path):
    page = darks.get("/hispec/explain", selector="nearest", cal_type="dark", **FIELDS)
    save = re.search(r'<a href="([^"]+)" download>Save as manifest</a>', page.text).group(1)
    download = darks.client.get(unescape(save))
    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    document = parse_manifest(download.content, "saved.json")
    recorded = tmp_path / "cli.json"
    meta = [arg for key, value in FIELDS.items() for arg in ("--meta", f"{key}={value}")]
    cli_report(tmp_path, "--cache-dir", str(tmp_path / "cache"), "explain", "--selector",
               "nearest", "--option", "cal_type=dark", *meta,
               "--manifest", str(recorded))  # fmt: skip
    expected = json.loads(recorded.read_text())
    assert document["entries"] == expected["entries"]
    assert document["entries"][0]["chosen"]["filename"] == "dark_near.fits"
    assert {k: v for k, v in document.items() if k not in ("created", "entries")} == {
        k: v for k, v in expected.items() if k not in ("created", "entries")
    }


def fits_frame(path: Path, data_bytes: int = 0, **cards) -> Path:
    """A science frame with these header cards (and a data array of about ``data_bytes``)."""
    header = fits.Header()
    header.update({"DATE-OBS": "2024-03-01T06:00:00", "SPEC": "yJ", "INSTERA": "era1",
                   "EXPTIME": 300, **cards})  # fmt: skip
    data = None
    if data_bytes:
        import numpy

        data = numpy.zeros(data_bytes // 2, dtype=numpy.int16)
    fits.PrimaryHDU(data=data, header=header).writeto(path)
    return path


def upload_frame(site, name: str, data: bytes, token: str | None = None, **fields):
    token = csrf_of(site, "/hispec/explain") if token is None else token
    form = {"csrf": token, "selector": "nearest", "cal_type": "dark", **fields}
    files = [("fits", (name, data, "application/fits"))]
    return site.client.post(f"{site.base}/hispec/explain", data=form, files=files)


def test_an_uploaded_fits_header_is_read_as_koa_cal_explain_reads_the_file(darks, tmp_path):
    frame = fits_frame(tmp_path / "sci_0042.fits", data_bytes=3 << 20)  # only the header is read
    page = upload_frame(darks, "sci_0042.fits", frame.read_bytes())
    assert page.status_code == 200, page.text[-2000:]
    assert page.headers["content-security-policy"] == CSP
    cache = str(tmp_path / "cache")
    report = cli_report(tmp_path, "--cache-dir", cache, "explain", "--selector", "nearest",
                        "--option", "cal_type=dark", "--input", str(frame))  # fmt: skip
    assert ranked(page.text) == [c["filename"] for c in report["candidates"]]
    assert (
        report["chosen"]["filename"] == "dark_near.fits" and "Choice for sci_0042.fits" in page.text
    )
    # The command line gives the header's metadata, and reproduces the choice.
    assert (
        cli_report(tmp_path, *command_of(page.text)[1:])["chosen"]["id"] == report["chosen"]["id"]
    )
    # Saved as a manifest, the pin is the one koa-cal explain --input --manifest records.
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text.split(
        'action="/ui/hispec/explain.json"', 1)[1].split("</form>", 1)[0]))  # fmt: skip
    saved = darks.client.post(f"{darks.base}/hispec/explain.json",
                              data={k: unescape(v) for k, v in form.items()})  # fmt: skip
    assert saved.status_code == 200, saved.text[-1500:]
    recorded = tmp_path / "cli.json"
    cli_report(tmp_path, "--cache-dir", cache, "explain", "--selector", "nearest", "--option",
               "cal_type=dark", "--input", str(frame), "--manifest", str(recorded))  # fmt: skip
    assert json.loads(saved.content)["entries"] == json.loads(recorded.read_text())["entries"]
    forged = darks.client.post(f"{darks.base}/hispec/explain.json", data={**form, "csrf": "x" * 43})
    assert forged.status_code == 403


def assert_harmless(html: str) -> None:
    assert "<script" not in html.lower() and "<img" not in html.lower()


def card(text: str) -> bytes:
    return text.ljust(80).encode("latin-1")


def test_hostile_fits_headers_are_refused_or_escaped(darks, tmp_path):
    simple = card("SIMPLE  =                    T")
    end = card("END")
    refused = {
        "non_ascii.fits": (simple + card("SPEC    = 'y\xe9J'") + end, "not printable ASCII"),
        "no_end.fits": ((simple + card("SPEC    = 'yJ'")).ljust(2 * 2880, b" "),
                        "ends without an END card after 2 block(s)"),
        "endless.fits": ((simple + card("COMMENT x") * 4000),
                         "no END card in the first 100 blocks"),
        "page.fits": (b"<html><script>alert(1)</script></html>".ljust(2880), "does not begin with"),
        "bad_date.fits": ((simple + card("DATE-OBS= '01/03/24'") + end).ljust(2880),
                          "is not an ISO 8601 date"),
    }  # fmt: skip
    for name, (data, message) in refused.items():
        page = upload_frame(darks, name, data)
        assert page.status_code == 400, (name, page.text[-1500:])
        assert message in unescape(page.text), name
        assert page.headers["content-security-policy"] == CSP
        assert_harmless(page.text)
    hostile = fits_frame(tmp_path / "hostile.fits", OBJECT="<script>alert(1)</script>",
                         SPEC="<script>alert(2)</script>")  # fmt: skip
    page = upload_frame(darks, '"><img src=x onerror=alert(3)>.fits', hostile.read_bytes())
    assert page.headers["content-security-policy"] == CSP
    assert_harmless(page.text)
    assert page.status_code == 200  # no dark of that spectrograph: nothing chosen, said escaped
    assert "Nothing chosen" in page.text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page.text
    assert "&lt;img src=x onerror=alert(3)&gt;.fits" in page.text
    missing_token = upload_frame(darks, "sci.fits", hostile.read_bytes(), token="")
    assert missing_token.status_code == 403 and "Nothing chosen" not in missing_token.text


def test_hostile_form_values_are_refused_with_a_message(darks):
    cases = [
        ({"selector": "os:system", "cal_type": "dark"}, "Choose a selector: this site offers "
                                                        "nearest, latest"),
        ({"selector": "nearest", "cal_type": "dark", "options": "__class__=x"}, "is not an option"),
        ({"selector": "nearest", "cal_type": "dark", "options": "max_dayz=3"},
         "did you mean max_days?"),
        ({"selector": "nearest", "cal_type": "dark", "extra": 'a"b=1'}, "more metadata"),
        ({"selector": "nearest", "cal_type": "dark", "datetime_obs": "<script>"},
         "The selection cannot run"),
        ({"selector": "nearest", "cal_type": "dark", "spectrograph": "\x1b[2J"},
         "holds a control character"),
        ({"selector": "nearest", "cal_type": "dark"}, "Give the frame's metadata"),
        ({"selector": "nearest", "cal_type": "dark", **FIELDS, "as_of": "yesterday"},
         "The selection cannot run"),
    ]  # fmt: skip
    for params, message in cases:
        page = darks.get("/hispec/explain", **params)
        assert page.status_code == 400, (params, page.text[-1500:])
        assert message in unescape(page.text), params
        assert page.headers["content-security-policy"] == CSP
        assert_harmless(page.text)
        assert "\x1b" not in page.text


def test_the_archive_sends_explaining_to_koa_cal_ui(tmp_path):
    with open_site("sqlite", tmp_path) as site:
        for path in ("/hispec/explain", "/hispec/explain?selector=nearest&cal_type=dark",
                     "/hispec/explain.json?selector=nearest"):  # fmt: skip
            page = site.get(path)
            assert page.status_code == 404 and "koa-cal --instrument hispec ui" in page.text
            assert page.headers["content-security-policy"] == CSP
        posted = site.client.post("/ui/hispec/explain", data={"csrf": "x"})
        assert posted.status_code == 404


def test_koa_cal_ui_offers_its_selectors_and_manifests(tmp_path):
    from koa_middleware.cache.local_cache import LocalCache
    from koa_middleware.config import resolve_config

    cache = LocalCache.open(resolve_config("hispec", str(tmp_path / "cache")))
    cache.db.add_validated(
        [validate_record(make_record(filename="flat_one.fits", cal_type="flat"))]
    )
    cache.close()
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "night1.json").write_text("{}")
    selectors = Path(__file__).parents[1] / "cli" / "user_selectors"
    env = cli_env(tmp_path, PYTHONPATH=f"{selectors}:{':'.join(sys.path)}")
    process = subprocess.Popen(
        [sys.executable, "-m", "koa_middleware.cli", "ui", "--selector", "any_flat:AnyFlat",
         "--manifests", str(runs)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/ui/", line)
        assert url, (line, process.poll())
        with httpx.Client(timeout=30) as client:
            form = client.get(url.group(0) + "hispec/explain")
            assert "<option>any_flat:AnyFlat</option>" in form.text
            page = client.get(url.group(0) + "hispec/explain",
                              params={"selector": "any_flat:AnyFlat", **FIELDS})  # fmt: skip
            assert page.status_code == 200 and "flat_one.fits" in page.text
            assert "--selector any_flat:AnyFlat" in unescape(page.text)
            picks = client.get(url.group(0) + "hispec/manifest")
            assert "<option>night1.json</option>" in picks.text
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()


def test_header_reading_matches_astropy_for_long_and_quoted_strings(tmp_path):
    from koa_middleware.fits_cards import read_primary_header

    header = fits.Header()
    header["LONGSTR"] = "x" * 100 + "y" * 30
    header["QUOTE"] = "it's"
    header["REAL"] = 1.5e-10
    header["FLAG"] = False
    buffer = io.BytesIO()
    fits.PrimaryHDU(header=header).writeto(buffer)
    found = read_primary_header(buffer.getvalue())
    assert {k: found[k] for k in ("LONGSTR", "QUOTE", "REAL", "FLAG")} == {
        "LONGSTR": header["LONGSTR"], "QUOTE": "it's", "REAL": 1.5e-10, "FLAG": False}  # fmt: skip


class BrokenSelector(NearestInTimeSelector):
    """A pipeline's selector with a bug: its query fails."""

    def explain_candidates(self, input, db, **kwargs):
        raise RuntimeError("no such column: <b>spec</b>")


def test_a_failing_selector_of_the_pipeline_is_reported_not_crashed(tmp_path):
    tools = LocalTools(selectors={"mine:Broken": BrokenSelector})
    with local_site(tmp_path, tools) as site:
        page = site.get("/hispec/explain", selector="mine:Broken", cal_type="dark", **FIELDS)
        assert page.status_code == 400
        assert "The selector mine:Broken failed (RuntimeError: no such column" in page.text
        assert "&lt;b&gt;spec&lt;/b&gt;" in page.text

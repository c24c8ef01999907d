"""The manifest check page over the archive's catalog (SQLite, PostgreSQL) and a local cache."""

from __future__ import annotations

import json
import os
from html import unescape

from koa_middleware.selectors import LatestVersionSelector, NearestInTimeSelector
from koa_middleware.web import CSP
from koa_middleware.web.local_tools import LocalTools
from support.archive import make_record
from support.web_forms import (
    FRAME,
    csrf_of,
    local_site,
    record_manifest,
    row_with,
    upload_manifests,
)

PINS = "The calibrations"
PAIRS = "Each selection"


def calibration(filename: str, cal_type: str = "dark", **fields) -> dict:
    """A record of the frame's family (spectrograph yJ, era1), with a file MD5."""
    values = {"spectrograph": "yJ", "instrument_era": "era1", "file_md5": "a" * 32,
              "file_size": 10, "datetime_obs": "2024-03-01T00:00:00"}  # fmt: skip
    return make_record(filename=filename, cal_type=cal_type, **{**values, **fields})


def version_two(record: dict, filename: str) -> dict:
    """The next version of ``record``'s calibration: the same family, version 002."""
    return dict(record, id=make_record()["id"], filename=filename, cal_version="002")


def test_a_manifest_recorded_before_a_retraction_shows_it_retracted_with_the_reason(site, tmp_path):
    dark = calibration("dark_v1.fits")
    flat = calibration("flat_v1.fits", "flat")
    arc = calibration("arc_v1.fits", "arc")
    site.add([dark, flat, arc])
    recorded = record_manifest(
        tmp_path / "run.json",
        [
            (FRAME, NearestInTimeSelector("dark"), dark),
            (FRAME, LatestVersionSelector("flat"), flat),
            (dict(FRAME, filename="sci_0002.fits"), NearestInTimeSelector("dark"), dark),
            (FRAME, NearestInTimeSelector("arc"), arc),
        ],
    )
    # After the run: the flat is retracted, the dark gets a version 002.
    site.retract(flat["id"], "lamp flicker on 2024-03-01")
    newer_dark = version_two(dark, "dark_v2.fits")
    site.add([newer_dark])

    page = upload_manifests(site, ("run.json", recorded))
    assert page.status_code == 200, page.text[-2000:]
    assert page.headers["content-security-policy"] == CSP
    assert "2 of 3 pins must be redone" in page.text
    assert "(3 of 4 selections used them)" in page.text
    flat_row = row_with(page.text, PINS, "flat_v1.fits")
    assert "Retracted on" in flat_row and "lamp flicker on 2024-03-01" in flat_row
    dark_row = row_with(page.text, PINS, "dark_v1.fits")
    assert "Superseded by version 002" in dark_row and "dark_v2.fits" in dark_row
    assert "2 selection(s): sci_0001.fits, sci_0002.fits" in dark_row
    assert f'href="/ui/hispec/records/{newer_dark["id"]}"' in page.text  # the newer version
    assert f'href="/ui/hispec/records/{flat["id"]}"' in page.text
    assert "Live" in row_with(page.text, PINS, "arc_v1.fits")


def test_a_pin_unknown_here_or_with_other_bytes_must_be_redone(site, tmp_path):
    kept = calibration("dark_kept.fits")
    rebuilt = calibration("dark_rebuilt.fits", file_md5="b" * 32)
    site.add([kept, rebuilt])
    elsewhere = calibration("dark_elsewhere.fits")
    recorded = record_manifest(
        tmp_path / "run.json",
        [
            (FRAME, NearestInTimeSelector("dark"), kept),
            (FRAME, NearestInTimeSelector("dark", max_days=1), dict(rebuilt, file_md5="c" * 32)),
            (FRAME, NearestInTimeSelector("dark", max_days=2), elsewhere),
        ],
    )
    page = upload_manifests(site, ("run.json", recorded))
    assert "2 of 3 pins must be redone" in page.text
    assert "Unknown here" in row_with(page.text, PINS, "dark_elsewhere.fits")
    assert f"/records/{elsewhere['id']}" not in page.text  # no link to a record it lacks
    assert "not the one the run used" in row_with(page.text, PINS, "dark_rebuilt.fits")


def test_two_manifests_are_compared_selection_by_selection(site, tmp_path):
    dark = calibration("dark_v1.fits")
    newer_dark = version_two(dark, "dark_v2.fits")
    flat = calibration("flat_v1.fits", "flat")
    arc = calibration("arc_v1.fits", "arc")
    bias = calibration("bias_v1.fits", "bias")
    site.add([dark, newer_dark, flat, arc, bias])
    first = record_manifest(
        tmp_path / "first.json",
        [
            (FRAME, NearestInTimeSelector("dark"), dark),
            (FRAME, LatestVersionSelector("flat"), flat),
            (FRAME, NearestInTimeSelector("bias"), bias),
        ],
    )
    second = record_manifest(
        tmp_path / "second.json",
        [
            (FRAME, NearestInTimeSelector("dark", max_days=3), newer_dark),
            (FRAME, NearestInTimeSelector("arc"), arc),
            (FRAME, NearestInTimeSelector("bias"), bias),
        ],
    )
    page = upload_manifests(site, ("run_a.json", first), ("run_b.json", second))
    assert page.status_code == 200, page.text[-2000:]
    assert "1 same, 1 changed, 1 only in run_a.json, 1 only in run_b.json" in page.text
    changed = row_with(page.text, PAIRS, "dark_v1.fits")
    assert "Changed" in changed and "dark_v2.fits" in changed
    assert "max_days: None -> 3.0" in changed  # what changed in the selector
    assert "Superseded by version 002" in changed  # the first run's dark is old now
    assert "Only in run_a.json" in row_with(page.text, PAIRS, "flat_v1.fits")
    assert "Only in run_b.json" in row_with(page.text, PAIRS, "arc_v1.fits")
    assert "Same" in row_with(page.text, PAIRS, "bias_v1.fits")


def records_and_changes(site) -> tuple:
    """Everything a refused upload must leave as it was: every record, and the feed."""
    records = site.get("/hispec/browse.json", include_retracted="1").json()
    return records, site.get("/hispec/changes").text if site.is_archive else None


def test_oversized_and_malformed_manifests_are_refused_and_change_nothing(site, tmp_path):
    dark = calibration("dark_v1.fits")
    site.add([dark])
    good = json.loads(record_manifest(tmp_path / "run.json", [(FRAME, None, dark)]))
    before = records_and_changes(site)
    refused = {
        "big.json": (b"{" + b" " * (5 << 20) + b"}", 413, "larger than 5 MiB"),
        "broken.json": (b'{"format": "koa-manifest/1", "entries": [', 400,
                        "is not a JSON manifest"),
        "other.json": (json.dumps({"format": "something/2"}).encode(), 400,
                       "is not a calibration manifest"),
        "bad_id.json": (json.dumps({**good, "entries": [
            {**good["entries"][0], "chosen": {**dark, "id": "../../etc/passwd"}}]}).encode(),
            400, "Entry 1 of the manifest bad_id.json is invalid"),
        "deep.json": (b"[" * 100 + b"]" * 100, 400, "nests arrays or objects"),
        "liger.json": (json.dumps({**good, "instrument": "liger"}).encode(), 400,
                       "is a manifest of 'liger', not hispec"),
        "empty.json": (b"", 400, "is not a JSON manifest"),
    }  # fmt: skip
    for name, (data, status, message) in refused.items():
        page = upload_manifests(site, (name, data))
        assert page.status_code == status, (name, page.text[-1500:])
        assert message in unescape(page.text), name
        assert "Not checked:" in page.text and page.headers["content-security-policy"] == CSP
        assert "pins must be redone" not in page.text
    # A body beyond two manifests is refused before it is read.
    token = csrf_of(site, "/hispec/manifest")
    huge = site.client.post(
        f"{site.base}/hispec/manifest",
        content=b"x" * (11 << 20),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert huge.status_code == 413 and "larger than" in huge.text
    not_multipart = site.client.post(f"{site.base}/hispec/manifest", data={"csrf": token})
    assert not_multipart.status_code == 400 and "multipart/form-data" in not_multipart.text
    assert records_and_changes(site) == before


def test_an_upload_needs_the_form_csrf_token(site, tmp_path):
    dark = calibration("dark_v1.fits")
    site.add([dark])
    recorded = record_manifest(tmp_path / "run.json", [(FRAME, None, dark)])
    forged = upload_manifests(site, ("run.json", recorded), token="forged-" + "x" * 40)
    assert forged.status_code == 403 and "came from another site" in forged.text
    assert "pins must be redone" not in forged.text
    token = csrf_of(site, "/hispec/manifest")
    site.client.cookies.clear()  # another browser: the token is not its own
    assert upload_manifests(site, ("run.json", recorded), token=token).status_code == 403
    files = [("manifest", ("run.json", recorded, "application/json"))]
    missing = site.client.post(f"{site.base}/hispec/manifest", files=files)
    assert missing.status_code == 403
    assert upload_manifests(site, ("run.json", recorded)).status_code == 200


def test_a_token_archive_checks_manifests_only_in_a_session_with_its_token(tmp_path):
    from koa_middleware.archive.tokens import TokenStore
    from support.web_sites import open_site

    with open_site("sqlite", tmp_path, anonymous_read=False) as site:
        dark = calibration("dark_v1.fits")
        site.add([dark])
        recorded = record_manifest(tmp_path / "run.json", [(FRAME, None, dark)])
        files = [("manifest", ("run.json", recorded, "application/json"))]
        anonymous = site.client.post("/ui/hispec/manifest", data={"csrf": "x"}, files=files)
        assert anonymous.status_code == 401 and "dark_v1.fits" not in anonymous.text
        token = TokenStore(site.backend.engine).create("viewer", "read")
        login = csrf_of(site, "/login")
        site.client.post("/ui/login", data={"csrf": login, "token": token})
        assert upload_manifests(site, ("run.json", recorded), token="x" * 43).status_code == 403
        page = upload_manifests(site, ("run.json", recorded))  # the session's own token
        assert page.status_code == 200 and "0 of 1 pins must be redone" in page.text


def test_manifests_are_picked_only_by_a_name_the_folder_lists(tmp_path):
    folder = tmp_path / "runs"
    (folder / "nested").mkdir(parents=True)
    with local_site(tmp_path, LocalTools(manifests=folder)) as site:
        dark = calibration("dark_v1.fits")
        site.add([dark])
        record_manifest(folder / "night1.json", [(FRAME, None, dark)])
        record_manifest(folder / "night2.json", [(FRAME, NearestInTimeSelector("dark"), dark)])
        # Sentinels: manifests outside the folder, in a subfolder, and a link leading out.
        outside = dict(dark, filename="SENTINEL_OUTSIDE.fits")
        record_manifest(tmp_path / "secret.json", [(FRAME, None, outside)])
        nested = dict(dark, filename="SENTINEL_NESTED.fits")
        record_manifest(folder / "nested" / "inner.json", [(FRAME, None, nested)])
        os.symlink(tmp_path / "secret.json", folder / "link.json")
        (folder / "notes.txt").write_text("SENTINEL_TEXT")

        form = site.get("/hispec/manifest")
        assert "<option>night1.json</option>" in form.text
        assert "link.json" not in form.text and "notes.txt" not in form.text
        page = site.get("/hispec/manifest", pick="night1.json")
        assert page.status_code == 200 and "0 of 1 pins must be redone" in page.text
        both = site.get("/hispec/manifest", pick="night1.json", other="night2.json")
        assert "0 same, 1 changed" not in both.text and "1 only in night1.json" not in both.text
        assert "1 same" in both.text  # the same input and cal_type, the same calibration
        hostile = [
            "../secret.json",
            str(tmp_path / "secret.json"),
            "link.json",
            "nested/inner.json",
            "nested/../../secret.json",
            "..%2Fsecret.json",
            "night1.json/../../secret.json",
            "notes.txt",
            "night1.json\x00.txt",
        ]
        for name in hostile:
            refused = site.get("/hispec/manifest", pick="night1.json", other=name)
            assert refused.status_code == 400, name
            assert "is not one of the manifests of the folder" in refused.text
            assert "SENTINEL" not in refused.text, name
            assert refused.headers["content-security-policy"] == CSP


def test_the_archive_has_no_folder_to_pick_from(site):
    page = site.get("/hispec/manifest")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    assert 'name="pick"' not in page.text
    assert ('href="/ui/hispec/explain"' in page.text) == (not site.is_archive)
    assert 'href="/ui/hispec/manifest" aria-current="page">Manifest check' in page.text
    if site.is_archive:
        refused = site.get("/hispec/manifest", pick="run.json")
        assert refused.status_code == 400 and "no folder of manifests" in refused.text


def test_a_family_without_the_time_is_looked_up_by_its_columns(site, tmp_path, monkeypatch):
    profile = tmp_path / "hispec.toml"
    profile.write_text(
        'instrument = "hispec"\n[families]\ndark = ["cal_type", "spectrograph"]\n'
        'default = ["cal_type", "spectrograph", "instrument_era", "datetime_obs"]\n'
    )
    monkeypatch.setenv("KOA_INSTRUMENT_PROFILE", str(profile))
    dark = calibration("dark_march1.fits")
    later = dict(version_two(dark, "dark_march5.fits"), datetime_obs="2024-03-05T00:00:00")
    other = dict(version_two(dark, "dark_hk.fits"), spectrograph="HK", cal_version="003")
    site.add([dark, later, other])
    recorded = record_manifest(tmp_path / "run.json", [(FRAME, None, dark)])
    page = upload_manifests(site, ("run.json", recorded))
    row = row_with(page.text, PINS, "dark_march1.fits")
    assert "Superseded by version 002" in row and "dark_march5.fits" in row  # not HK's 003


def test_hostile_form_bodies_are_refused_with_a_message(site, tmp_path):
    token = csrf_of(site, "/hispec/manifest")
    field = b'Content-Disposition: form-data; name="csrf"\r\n\r\n' + token.encode() + b"\r\n"
    bodies = {
        "no boundary": ("multipart/form-data", b"--x\r\n" + field + b"--x--\r\n",
                        "not sent as multipart/form-data"),
        "cut short": ("multipart/form-data; boundary=x", b"--x\r\n" + field,
                      "ends before its closing boundary"),
        "many fields": ("multipart/form-data; boundary=x", (b"--x\r\n" + field) * 40 + b"--x--",
                        "more than 16 fields"),
        "no name": ("multipart/form-data; boundary=x",
                    b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--\r\n",
                    "no field name"),
        "no headers": ("multipart/form-data; boundary=x", b"--x\r\nvalue\r\n--x--\r\n",
                       "has no headers"),
        "no file": ("multipart/form-data; boundary=x", b"--x\r\n" + field + b"--x--\r\n",
                    "Choose a run manifest"),
    }  # fmt: skip
    for name, (kind, body, message) in bodies.items():
        page = site.client.post(f"{site.base}/hispec/manifest", content=body,
                                headers={"content-type": kind})  # fmt: skip
        assert page.status_code == 400, (name, page.text[-1000:])
        assert message in unescape(page.text), name
        assert page.headers["content-security-policy"] == CSP

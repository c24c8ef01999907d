"""A calibration whose record carries no MD5 is pinned by id, and its manifest reads back.

Records need no ``file_md5`` (``LOCAL_REQUIRED_FIELDS``); a run that chose one still
records a manifest, which every reader of manifests (replay, ``manifest verify``, the
manifest check page) must accept, while a pin of no bytes never vouches for a file
that has an MD5.
"""

from __future__ import annotations

import json

from koa_middleware import CalibrationStore
from koa_middleware.manifest import parse_manifest, read_manifest, verify_manifest
from koa_middleware.selectors import NearestInTimeSelector

DARK_ID = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"
FRAME = {
    "filename": "frame.fits",
    "datetime_obs": "2024-01-03T00:00:00",
    "spectrograph": "spec_a",
    "instrument_era": "era1",
}


def record_run(tmp_path, store) -> tuple:
    """A dark without an MD5 in the cache, its file beside it; one selection recorded."""
    store.local_db.add(
        {
            "id": DARK_ID,
            "filename": "dark_without_md5.fits",
            "cal_type": "dark",
            "datetime_obs": "2024-01-02T00:00:00.000",
            "spectrograph": "spec_a",
            "instrument_era": "era1",
            "master_cal": 1,
        }
    )
    store.layout.path_for("dark_without_md5.fits").write_bytes(b"SIMPLE  =                    T")
    path = tmp_path / "run.json"
    with store.record_manifest(path):
        chosen = store.select_and_get_calibration(FRAME, NearestInTimeSelector("dark"))[1]
    return path, chosen


def test_the_pin_of_a_record_without_md5_reads_back_and_verifies(tmp_path, no_koa_environment):
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        path, chosen = record_run(tmp_path, store)
        assert chosen["id"] == DARK_ID and not chosen.get("file_md5")
        pins = [entry["chosen"] for entry in read_manifest(path)["entries"]]
        assert [(pin["id"], pin["file_md5"]) for pin in pins] == [(DARK_ID, None)]
        assert parse_manifest(path.read_bytes(), "run.json")["entries"][0]["chosen"] == pins[0]
        assert verify_manifest(store.cache, path) == []


def test_a_pin_of_no_bytes_does_not_vouch_for_a_record_that_has_an_md5(tmp_path, manifest, cache):
    document = json.loads(manifest.read_text())
    pinned = dict(document["entries"][0]["chosen"])
    for entry in document["entries"]:
        if entry["chosen"]["id"] == pinned["id"]:
            entry["chosen"]["file_md5"] = None
    path = tmp_path / "no-md5.json"
    path.write_text(json.dumps(document))
    with CalibrationStore("hispec", cache, connect_remote=False) as store:
        problems = verify_manifest(store.cache, path)
    assert [p["id"] for p in problems] == [pinned["id"]]
    assert pinned["file_md5"] in problems[0]["problem"]

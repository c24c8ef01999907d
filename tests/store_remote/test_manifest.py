"""Run manifests against a real archive: record a run, publish more, replay it exactly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import koa_middleware
from koa_middleware.errors import ChecksumMismatchError, ManifestError
from koa_middleware.hashing import file_md5
from koa_middleware.selectors import NearestInTimeSelector
from support.models import FileModel, dark

#: Science frames of nights 2, 5 and 9 (metadata as a pipeline passes it).
FRAMES = [
    {"filename": f"sci_{day:02d}.fits", "datetime_obs": f"2024-01-{day:02d}T06:00:00",
     "spectrograph": "spec_a", "instrument_era": "era1"}
    for day in (2, 5, 9)
]  # fmt: skip


def publish_darks(publisher, days: list[int]) -> dict[str, bytes]:
    """Register and push a dark for each day; return id -> bytes."""
    data = {}
    for day in days:
        payload = os.urandom(3000 + day)
        record = dark(day - 1, instrument_era="era1", filename=f"dark_{day:02d}_{os.getpid()}")
        record["filename"] += f"_{len(data)}_{payload[:2].hex()}.fits"
        _, stored = publisher.register_calibration(FileModel(record, payload), origin="KECK")
        data[stored["id"]] = payload
    publisher.sync_records_to_remote()
    return data


@pytest.fixture
def published(archive, open_store):
    publisher = open_store(
        archive.url(2), archive.tokens["write"], name="publisher", sync_on_init=False
    )
    return publisher, publish_darks(publisher, [1, 4, 8])


@pytest.fixture
def recorded(archive, open_store, published, tmp_path):
    """A run that selected a dark for each frame and got one more by id."""
    _publisher, data = published
    store = open_store(archive.url(2), archive.tokens["read"], name="run")
    manifest = tmp_path / "run.json"
    selector = NearestInTimeSelector("dark")
    with store.record_manifest(manifest):
        chosen = [store.select_and_get_calibration(frame, selector) for frame in FRAMES]
        by_id = store.get_calibration(next(iter(data)))
    return manifest, chosen, by_id


def test_a_recorded_run_names_every_calibration_and_where_it_came_from(archive, recorded):
    manifest, chosen, by_id = recorded
    document = json.loads(manifest.read_text())
    assert document["format"] == "koa-manifest/1"
    assert document["library_version"] == koa_middleware.__version__
    assert document["archive_url"] == archive.url(2)
    entries = document["entries"]
    assert [e["call"] for e in entries] == ["select_and_get_calibration"] * 3 + ["get_calibration"]
    for entry, frame, (path, record) in zip(entries, FRAMES, chosen, strict=False):
        assert entry["input"]["name"] == frame["filename"]
        assert entry["input"]["metadata"]["spectrograph"] == "spec_a"
        assert entry["selector"]["class"] == "koa_middleware.selectors:NearestInTimeSelector"
        assert entry["selector"]["parameters"]["cal_type"] == "dark"
        assert entry["chosen"]["id"] == record["id"]
        assert entry["chosen"]["file_md5"] == file_md5(path)
    assert entries[3]["chosen"]["id"] == by_id[1]["id"]


def test_replay_returns_the_recorded_files_after_newer_ones_appear_and_old_ones_go(
    archive, open_store, published, recorded, caplog
):
    manifest, chosen, _ = recorded
    publisher, _data = published
    publish_darks(publisher, [2, 5, 9])  # each now nearer to a frame than what the run used
    publisher.remote_db.retract([r["id"] for _, r in chosen], "superseded")
    selector = NearestInTimeSelector("dark")
    fresh = open_store(archive.url(2), archive.tokens["read"], name="fresh")
    selected_now = [fresh.select_and_get_calibration(f, selector)[1]["id"] for f in FRAMES]
    assert set(selected_now).isdisjoint(r["id"] for _, r in chosen)  # the pin matters

    replay = open_store(archive.url(2), archive.tokens["read"], name="replay", manifest=manifest)
    with caplog.at_level("WARNING"):
        for frame, (old_path, old_record) in zip(FRAMES, chosen, strict=True):
            path, record = replay.select_and_get_calibration(frame, NearestInTimeSelector("dark"))
            assert record["id"] == old_record["id"]
            assert Path(path).read_bytes() == Path(old_path).read_bytes()
            assert Path(path).parent == Path(replay.data_dir)  # fetched into the replaying cache
    assert caplog.text.count("superseded") == len(FRAMES)  # each one used, with a warning


def test_an_input_the_manifest_does_not_know_raises_unless_told_to_select(
    archive, open_store, recorded
):
    manifest, _chosen, _ = recorded
    other = {**FRAMES[0], "filename": "sci_new.fits"}
    strict = open_store(archive.url(2), archive.tokens["read"], name="strict", manifest=manifest)
    with pytest.raises(ManifestError, match="manifest_fallback=True"):
        strict.select_and_get_calibration(other, NearestInTimeSelector("dark"))
    loose = open_store(
        archive.url(2), archive.tokens["read"], name="loose", manifest=manifest,
        manifest_fallback=True,
    )  # fmt: skip
    path, record = loose.select_and_get_calibration(other, NearestInTimeSelector("dark"))
    assert Path(path).is_file() and record["cal_type"] == "dark"


def test_a_changed_frame_or_another_selector_is_not_the_recorded_selection(
    archive, open_store, recorded
):
    manifest, _chosen, _ = recorded
    store = open_store(archive.url(2), archive.tokens["read"], name="c", manifest=manifest)
    moved = {**FRAMES[0], "datetime_obs": "2024-01-03T06:00:00"}
    with pytest.raises(ManifestError, match="datetime_obs"):
        store.select_and_get_calibration(moved, NearestInTimeSelector("dark"))
    with pytest.raises(ManifestError, match="pins no calibration"):
        store.select_and_get_calibration(FRAMES[0], NearestInTimeSelector("dark", max_days=1))


def test_a_pinned_calibration_whose_bytes_changed_is_refused(archive, open_store, recorded):
    manifest, _chosen, _ = recorded
    document = json.loads(manifest.read_text())
    document["entries"][0]["chosen"]["file_md5"] = "0" * 32
    manifest.write_text(json.dumps(document))
    store = open_store(archive.url(2), archive.tokens["read"], name="d", manifest=manifest)
    with pytest.raises(ChecksumMismatchError, match="cannot be reproduced"):
        store.select_and_get_calibration(FRAMES[0], NearestInTimeSelector("dark"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not a JSON manifest"),
        ('{"format": "other/1", "entries": []}', "not a calibration manifest"),
        ('{"format": "koa-manifest/1"}', "no list of entries"),
        (
            '{"format": "koa-manifest/1", "entries": [{"call": "x", "input": {}, '
            '"chosen": {"id": "../../etc", "file_md5": "' + "0" * 32 + '"}}]}',
            "Entry 1",
        ),
        (
            '{"format": "koa-manifest/1", "entries": [{"call": "x", "input": {}, '
            '"chosen": {"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427", "file_md5": "zz"}}]}',
            "Entry 1",
        ),
    ],
)
def test_a_bad_manifest_file_is_refused_with_its_name(tmp_path, open_store, text, problem):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ManifestError, match=problem) as caught:
        open_store("http://127.0.0.1:9/", None, connect_remote=False, manifest=path)
    assert "bad.json" in str(caught.value)


def test_a_missing_manifest_file_is_refused(tmp_path, open_store):
    with pytest.raises(ManifestError, match="Cannot read the manifest"):
        open_store("http://127.0.0.1:9/", None, connect_remote=False, manifest=tmp_path / "x")


def test_the_manifest_is_written_even_when_the_run_fails(archive, open_store, tmp_path):
    store = open_store(archive.url(2), archive.tokens["read"], name="e", sync_on_init=False)
    manifest = tmp_path / "failed.json"
    with pytest.raises(ValueError, match="the step failed"):
        with store.record_manifest(manifest):
            raise ValueError("the step failed")
    assert json.loads(manifest.read_text())["entries"] == []

"""Retracted calibrations are never fetched without a word.

A real archive holds three darks and retracts one. ``prefetch`` skips the
retracted one (no download, no path), counts it in ``last_prefetch`` and names
it in one warning; ``KOA_ALLOW_RETRACTED=1`` fetches it, with a warning.
``download_calibration_file`` of a retracted one downloads it, with a warning
that says when and why it was retracted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from support.models import FileModel, dark
from support.retract_archive import archive_cli


@pytest.fixture
def darks(archive, open_store, instrument):
    """Three darks on the archive; the second retracted there ("hot pixels")."""
    publisher = open_store(archive.url(2), archive.tokens["write"], name="publisher")
    records = [
        publisher.register_calibration(
            FileModel(dark(night, instrument_era="era1"), data=os.urandom(900 + night)),
            origin="KECK",
        )[1]
        for night in range(3)
    ]
    publisher.sync_records_to_remote()
    done = archive_cli(archive.root, None, "retract", "--instrument", instrument,
                       "--reason", "hot pixels", records[1]["id"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    return records


def cached_names(store) -> set[str]:
    return {p.name for p in Path(store.layout.calibrations_dir).iterdir()}


@pytest.mark.parametrize("synced", [True, False], ids=["after_sync", "records_fetched_by_id"])
def test_prefetch_skips_a_retracted_calibration_and_says_so(
    archive, open_store, darks, synced, caplog
):
    reader = open_store(archive.url(2), archive.tokens["read"], name="reader", sync_on_init=synced)
    caplog.set_level(logging.WARNING)
    paths = reader.prefetch([record["id"] for record in darks])
    live = [darks[0], darks[2]]
    assert [Path(p).name for p in paths] == [r["filename"] for r in live]
    assert cached_names(reader) == {r["filename"] for r in live}
    report = reader.last_prefetch
    assert report.skipped_retracted == [darks[1]["id"]] and report.downloaded == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "Skipped 1 retracted" in m and darks[1]["id"] in m and "hot pixels" in m for m in warned
    ), warned


def test_prefetch_fetches_a_retracted_calibration_when_allowed(
    archive, open_store, darks, monkeypatch, caplog
):
    monkeypatch.setenv("KOA_ALLOW_RETRACTED", "1")
    reader = open_store(archive.url(2), archive.tokens["read"], name="reader")
    caplog.set_level(logging.WARNING)
    paths = reader.prefetch([record["id"] for record in darks])
    assert [Path(p).name for p in paths] == [r["filename"] for r in darks]
    assert reader.last_prefetch.skipped_retracted == []
    assert any(darks[1]["id"] in r.getMessage() and "retracted" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)  # fmt: skip


@pytest.mark.parametrize("given", ["id", "record"])
def test_download_calibration_file_warns_of_a_retracted_calibration(
    archive, open_store, darks, given, caplog
):
    reader = open_store(archive.url(2), archive.tokens["read"], name="reader")
    caplog.set_level(logging.WARNING)
    retracted = darks[1]["id"] if given == "id" else reader.local_db.query_id(darks[1]["id"])
    path = reader.download_calibration_file(retracted)
    assert Path(path).name == darks[1]["filename"] and Path(path).is_file()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("retracted" in m and darks[1]["id"] in m and "hot pixels" in m for m in warned), (
        warned
    )
    caplog.clear()
    reader.download_calibration_file(darks[0]["id"])
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]

"""Where a record and its file come from, seen the same way on every path.

Cache B syncs from a real archive and gets the files; cache D names B in
``KOA_CALIBRATION_CACHE_READONLY`` and keeps a writable cache of its own. The
archive then retracts a dark: once B has synced, neither D's selection nor its
``koa-cal explain`` may choose it, before D syncs and after. And a file that D
serves in place from B is intact for ``koa-cal verify``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from koa_middleware.selectors import NearestInTimeSelector
from support.koa_cal import cli_env, koa_cal
from support.models import FileModel, dark
from support.retract_archive import archive_cli

#: A frame of night 2: of the darks of nights 1, 2 and 3, night 2's is nearest.
FRAME = {"filename": "sci.fits", "datetime_obs": "2024-01-02T06:00:00",
         "spectrograph": "spec_a", "instrument_era": "era1"}  # fmt: skip


@pytest.fixture
def shared_cluster(archive, open_store, instrument, tmp_path, monkeypatch):
    """Darks of three nights on the archive; cache B holds them all, with their files."""
    publisher = open_store(archive.url(2), archive.tokens["write"], name="publisher")
    darks = []
    for night in range(3):
        model = FileModel(
            dark(night, instrument_era="era1", mjd_start=60310.0 + night),
            data=os.urandom(1000 + night),
        )
        darks.append(publisher.register_calibration(model, origin="KECK")[1])
    publisher.sync_records_to_remote()
    shared = open_store(archive.url(2), archive.tokens["read"], name="shared")
    shared.prefetch([record["id"] for record in darks])
    shared.close()
    monkeypatch.setenv("KOA_CALIBRATION_CACHE_READONLY", str(tmp_path / "cache-shared"))
    return darks


def retract_on_archive(archive, instrument, cal_id):
    done = archive_cli(archive.root, None, "retract", "--instrument", instrument,
                       "--reason", "hot pixels", cal_id)  # fmt: skip
    assert done.returncode == 0, done.stderr


def explain_chosen(tmp_path, archive, instrument) -> str:
    env = cli_env(
        tmp_path,
        KOA_INSTRUMENT_NAME=instrument,
        KOA_CALIBRATION_CACHE=str(tmp_path / "cache-cluster"),
        KOA_CALIBRATION_CACHE_READONLY=str(tmp_path / "cache-shared"),
        KOA_CALIBRATIONS_URL=archive.url(2),
        KOA_API_TOKEN=archive.tokens["read"],
    )
    meta = [f"--meta={key}={value}" for key, value in FRAME.items() if key != "filename"]
    result = koa_cal("--json", "explain", "--selector", "nearest", "--option", "cal_type=dark",
                     *meta, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["chosen"]["id"]


def test_an_archive_retraction_reaches_a_cache_that_reads_a_read_only_cache(
    archive, open_store, instrument, tmp_path, shared_cluster
):
    night1, night2, night3 = (record["id"] for record in shared_cluster)
    cluster = open_store(archive.url(2), archive.tokens["read"], name="cluster")
    assert cluster.select_and_get_calibration(FRAME, NearestInTimeSelector("dark"))[1]["id"] == (
        night2
    )
    cluster.close()

    retract_on_archive(archive, instrument, night2)
    shared = open_store(archive.url(2), archive.tokens["read"], name="shared")
    shared.sync_records_from_remote()
    shared.close()

    # Before the cluster's cache syncs: the read-only cache knows of the retraction.
    cluster = open_store(archive.url(2), archive.tokens["read"], name="cluster", sync_on_init=False)
    path, record = cluster.select_and_get_calibration(FRAME, NearestInTimeSelector("dark"))
    assert record["id"] in (night1, night3)
    assert Path(path).parent == tmp_path / "cache-shared" / "calibrations" / instrument
    assert explain_chosen(tmp_path, archive, instrument) in (night1, night3)

    # After it syncs from the archive too.
    cluster.sync_records_from_remote()
    assert cluster.select_and_get_calibration(FRAME, NearestInTimeSelector("dark"))[1]["id"] in (
        night1,
        night3,
    )
    assert cluster.local_db.retraction(night2)["reason"] == "hot pixels"
    assert explain_chosen(tmp_path, archive, instrument) in (night1, night3)


def test_a_retraction_reaches_a_cache_that_copied_the_records_before(
    archive, open_store, instrument, tmp_path, shared_cluster
):
    night2 = shared_cluster[1]["id"]
    cluster = open_store(archive.url(2), archive.tokens["read"], name="cluster")
    assert cluster.select_and_get_calibration(FRAME, NearestInTimeSelector("dark"))[1]["id"] == (
        night2
    )
    retract_on_archive(archive, instrument, night2)
    shared = open_store(archive.url(2), archive.tokens["read"], name="shared")
    shared.sync_records_from_remote()
    shared.close()
    # The same open store: the next selection sees what the read-only cache learned.
    assert cluster.select_and_get_calibration(FRAME, NearestInTimeSelector("dark"))[1]["id"] != (
        night2
    )


def test_verify_counts_a_file_served_in_place_from_a_read_only_cache_as_intact(
    archive, open_store, instrument, tmp_path, shared_cluster
):
    cluster = open_store(archive.url(2), archive.tokens["read"], name="cluster")
    path, _ = cluster.get_calibration(shared_cluster[0]["id"])
    assert Path(path).is_relative_to(tmp_path / "cache-shared")
    cluster.close()
    env = cli_env(
        tmp_path,
        KOA_INSTRUMENT_NAME=instrument,
        KOA_CALIBRATION_CACHE=str(tmp_path / "cache-cluster"),
        KOA_CALIBRATION_CACHE_READONLY=str(tmp_path / "cache-shared"),
    )
    result = koa_cal("--json", "verify", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["problems"] == []
    assert report["ok"] == len(shared_cluster)

    # A file gone from the read-only cache too is reported, as before.
    shutil.rmtree(tmp_path / "cache-shared" / "calibrations" / instrument)
    result = koa_cal("--json", "verify", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(json.loads(result.stdout)["not_downloaded"]) == len(shared_cluster)

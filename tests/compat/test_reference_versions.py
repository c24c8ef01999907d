"""New versions of a family whose model gives every version the same file name.

The reference implementation's test model names its file from ``cal_type`` and
``datetime_obs`` only, and registers three versions of one family with
``new_version=True``. Each version keeps a file of its own here: the model's
name for the first, ``_v<version>`` before the extension for the next ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
from compat.hispec_pipeline.family_named import FamilyNamedModel
from compat.hispec_pipeline.store import HispecCalibrationStore

from koa_middleware import CalibrationStore
from koa_middleware.cache.registration import versioned_filename
from support.cache_state import temp_files
from support.children import ready_file, release_and_finish, start_child
from support.koa_cal import cli_env, koa_cal

#: An instrument without a profile, as in the reference's tests: a family is
#: ``cal_type`` and ``datetime_obs``.
INSTRUMENT = "test_instrument"
DAY = "2026-03-01T04:00:00.000"


def md5_of(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def files_of(store) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in store.layout.calibrations_dir.iterdir()}


def warnings_in(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_three_versions_named_alike_keep_their_own_files(tmp_path, no_koa_environment, caplog):
    caplog.set_level(logging.WARNING, logger="koa_middleware")
    models = [FamilyNamedModel("dark", DAY, data=f"dark {n} ".encode() * 500) for n in range(3)]
    name = models[0].file_name()
    assert {model.file_name() for model in models} == {name}
    results = []
    with CalibrationStore(INSTRUMENT, str(tmp_path / "cache"), connect_remote=False) as store:
        for model in models:
            files_before = files_of(store)
            records_before = [store.local_db.query_id(r["id"]) for _, r in results]
            caplog.clear()
            path, record = store.register_calibration(model, new_version=True)
            results.append((path, record))
            # every earlier version's file and record are as they were
            assert {n: files_of(store)[n] for n in files_before} == files_before
            assert [store.local_db.query_id(r["id"]) for _, r in results[:-1]] == records_before
            if record["cal_version"] == "001":
                assert warnings_in(caplog) == []
            else:
                (warning,) = warnings_in(caplog)  # one WARNING saying where the version went
                assert record["filename"] in warning and name in warning
        assert [r["cal_version"] for _, r in results] == ["001", "002", "003"]
        expected = [name, versioned_filename(name, "002"), versioned_filename(name, "003")]
        assert [Path(path).name for path, _ in results] == expected
        assert [r["filename"] for _, r in results] == expected
        assert expected[1:] == ["cal_dark_20260301040000000_v002.fits"] + expected[2:]
        for model, (path, record) in zip(models, results, strict=True):
            assert Path(path).parent == store.layout.calibrations_dir
            assert Path(path).read_bytes() == model.data
            assert md5_of(path) == record["file_md5"]
            assert store.get_calibration(record["id"])[0] == path
        assert store.detect_version_issues() == []
        assert sorted(files_of(store)) == sorted(expected)
        assert temp_files(store.layout) == []
        # without new_version the newest version answers, and other bytes are not registered
        again, newest = store.register_calibration(FamilyNamedModel("dark", DAY, data=b"other"))
        assert newest["cal_version"] == "003" and again == results[-1][0]
        assert len(store.local_db) == 3

    env = cli_env(tmp_path, KOA_INSTRUMENT_NAME=INSTRUMENT)
    check = koa_cal("versions", "--check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    verify = koa_cal("--json", "verify", env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["problems"] == [] and report["ok"] == 3


def test_the_versioned_name_keeps_the_extension():
    assert versioned_filename("dark.fits", "002") == "dark_v002.fits"
    assert versioned_filename("HB.20240924.45296.78.fits", "010") == (
        "HB.20240924.45296.78_v010.fits"
    )
    assert versioned_filename("dark.fits.gz", "002") == "dark_v002.fits.gz"
    assert versioned_filename("dark.fits.fz", "002") == "dark_v002.fits.fz"
    assert versioned_filename("dark", "002") == "dark_v002"
    assert versioned_filename(".hidden", "002") == ".hidden_v002"


@pytest.mark.slow
def test_processes_registering_versions_named_alike(tmp_path, no_koa_environment):
    cache = tmp_path / "cache"
    HispecCalibrationStore("hispec", str(cache), connect_remote=False).close()
    ready = tmp_path / "ready"
    ready.mkdir()
    environment = {**os.environ, "MODEL": "family_named"}
    workers = [
        start_child(
            "compat.hispec_pipeline.worker",
            cache,
            f"w{n}",
            8,
            ready_file(ready, n),
            env=environment,
            stderr=subprocess.PIPE,
        )
        for n in range(3)
    ]
    release_and_finish(workers, ready, cache / "go")
    with HispecCalibrationStore("hispec", str(cache), connect_remote=False) as store:
        rows = sorted(store.local_db.rows, key=lambda r: r["cal_version"])
        assert [r["cal_version"] for r in rows] == [f"{v:03d}" for v in range(1, 25)]
        name = rows[0]["filename"]
        assert [r["filename"] for r in rows[1:]] == [
            versioned_filename(name, r["cal_version"]) for r in rows[1:]
        ]
        for row in rows:
            path = store.layout.path_for(row["filename"])
            assert (md5_of(path), path.stat().st_size) == (row["file_md5"], row["file_size"])
        assert sorted(files_of(store)) == sorted(r["filename"] for r in rows)
        assert store.detect_version_issues() == []
        assert temp_files(store.layout) == []

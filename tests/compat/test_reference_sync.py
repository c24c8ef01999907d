"""sync_records_from_cached_files with models whose files are not in the instrument's folder.

The reference implementation adds such records (its test saves the files in the
cache's root). So do we, with a WARNING per file naming where it belongs; the
cache then counts those files as not downloaded, not as damage.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from compat.hispec_pipeline.family_named import FamilyNamedModel, PathKeepingModel

from koa_middleware import CalibrationStore
from koa_middleware.hashing import file_digest
from support.koa_cal import cli_env, koa_cal

INSTRUMENT = "test_instrument"
DAYS = ("2026-03-01T04:00:00.000", "2026-03-02T04:00:00.000", "2026-03-03T04:00:00.000")


def warnings_in(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def cli_json(*args: str, env: dict, returncode: int = 0) -> dict:
    result = koa_cal("--json", *args, env=env)
    assert result.returncode == returncode, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_records_of_files_saved_elsewhere_are_added(tmp_path, no_koa_environment, caplog):
    caplog.set_level(logging.WARNING, logger="koa_middleware")
    cache = tmp_path / "cache"
    models = [FamilyNamedModel("flat", day, data=f"flat {day}".encode()) for day in DAYS]
    saved = [Path(model.save(output_dir=str(cache))) for model in models]  # the cache's root
    with CalibrationStore(INSTRUMENT, str(cache), connect_remote=False) as store:
        added = store.sync_records_from_cached_files(models)
        folder = store.layout.calibrations_dir
        assert [r["id"] for r in added] == [model.meta["id"] for model in models]
        assert [r["filename"] for r in added] == [path.name for path in saved]
        assert {(r["origin"], r["cal_version"]) for r in added} == {("LOCAL", "001")}
        assert sorted(r["id"] for r in store.local_db.rows) == sorted(r["id"] for r in added)
        warnings = warnings_in(caplog)
        assert len(warnings) == len(models)
        for path, warning in zip(saved, warnings, strict=True):
            assert path.name in warning and str(folder) in warning
        assert store.get_missing_local_files() != []
        # the files stay where they were, untouched
        assert [p.read_bytes() for p in saved] == [m.data for m in models]

    env = cli_env(tmp_path, KOA_INSTRUMENT_NAME=INSTRUMENT)
    status = cli_json("status", env=env)
    assert status["records"] == 3 and status["files_not_downloaded"] == 3
    report = cli_json("verify", env=env)
    assert report["problems"] == [] and report["unrepaired"] == 0
    assert sorted(r["filename"] for r in report["not_downloaded"]) == sorted(p.name for p in saved)

    # copied where the cache keeps them, they are served
    for path in saved:
        shutil.copy(path, folder / path.name)
    assert cli_json("status", env=env)["files_not_downloaded"] == 0
    assert cli_json("verify", env=env)["ok"] == 3
    with CalibrationStore(INSTRUMENT, str(cache), connect_remote=False) as store:
        for record, path in zip(added, saved, strict=True):
            served, _ = store.get_calibration(record["id"])
            assert served == str(folder / path.name)


def test_a_model_that_keeps_its_path_gives_its_checksums(tmp_path, no_koa_environment):
    cache = tmp_path / "cache"
    model = PathKeepingModel("dark", DAYS[0], data=b"the dark" * 100)
    elsewhere = Path(model.save(output_dir=str(tmp_path / "night")))
    with CalibrationStore(INSTRUMENT, str(cache), connect_remote=False) as store:
        (record,) = store.sync_records_from_cached_files(model)
        assert (record["file_md5"], record["file_size"]) == file_digest(elsewhere)
        folder = store.layout.calibrations_dir
    # other bytes copied under its name are damage, which verify reports
    (folder / elsewhere.name).write_bytes(b"not the dark")
    env = cli_env(tmp_path, KOA_INSTRUMENT_NAME=INSTRUMENT)
    report = cli_json("verify", env=env, returncode=1)
    assert [p["problem"] for p in report["problems"]] == ["corrupt"]
    shutil.copy(elsewhere, folder / elsewhere.name)
    report = cli_json("verify", env=env)
    assert report["problems"] == [] and report["ok"] == 1


def test_files_in_the_cache_are_recorded_without_a_warning(tmp_path, no_koa_environment, caplog):
    caplog.set_level(logging.WARNING, logger="koa_middleware")
    cache = tmp_path / "cache"
    with CalibrationStore(INSTRUMENT, str(cache), connect_remote=False) as store:
        models = [FamilyNamedModel("flat", day, data=day.encode()) for day in DAYS]
        for model in models:
            model.save(output_dir=store.data_dir)
        added = store.sync_records_from_cached_files(models)
        for model, record in zip(models, added, strict=True):
            assert record["file_md5"] == file_digest(Path(store.data_dir) / model.file_name())[0]
        assert warnings_in(caplog) == []
        assert store.get_missing_local_files() == []

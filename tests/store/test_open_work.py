"""Opening a store does its start-up work only when there is something to do.

Each piece of work is shown skipped when nothing asks for it, and still done
when something does: the profile is scanned for again when the installed
packages or the profile file change, the schema is written only when a table or
index is missing, and a read-only cache is read again only when its database
changed.
"""

from __future__ import annotations

import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.database.local_database import LocalCalibrationDB
from koa_middleware.profiles import PROFILE_ENV, load_profile
from support.models import FileModel, dark

DB = "hispec_calibrations.db"


@pytest.fixture(autouse=True)
def _environment(no_koa_environment, monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.delenv("KOA_CALIBRATION_CACHE_READONLY", raising=False)


def install(folder: Path, instrument: str) -> None:
    """Install a distribution into ``folder`` whose entry point gives ``instrument`` a profile."""
    module = f"{instrument}_profile_module"
    (folder / f"{module}.py").write_text(
        textwrap.dedent(f"""
        from koa_middleware.profiles import InstrumentProfile
        PROFILE = InstrumentProfile("{instrument}", default_family=("cal_type", "ccd"))
        """)
    )
    info = folder / f"{instrument}_pipeline-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {instrument}_pipeline\n")
    (info / "entry_points.txt").write_text(
        f"[koa_middleware.instruments]\n{instrument} = {module}:PROFILE\n"
    )


def test_a_profile_is_looked_for_again_only_when_the_installed_packages_change(
    tmp_path, monkeypatch
):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    try:
        first = load_profile("openkpf")
        assert first.source == "built-in default"
        install(site, "openkpf")
        found = load_profile("openkpf")
        assert found.source == "entry point openkpf_profile_module:PROFILE"
        assert found.family_columns_for("dark") == ["cal_type", "ccd"]
        assert load_profile("openkpf") is found  # nothing changed: not looked for again
    finally:
        sys.modules.pop("openkpf_profile_module", None)


def test_a_profile_file_is_read_again_only_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "hispec.toml"
    path.write_text('instrument = "hispec"\n[families]\ndefault = ["cal_type"]\n')
    monkeypatch.setenv(PROFILE_ENV, str(path))
    first = load_profile("hispec")
    assert load_profile("hispec") is first
    path.write_text('instrument = "hispec"\n[families]\ndefault = ["cal_type", "detector"]\n')
    assert load_profile("hispec").family_columns_for("dark") == ["cal_type", "detector"]
    path.write_text("not toml [")
    with pytest.raises(Exception, match="is not valid TOML"):
        load_profile("hispec")


def test_opening_an_existing_database_waits_for_no_writer(tmp_path):
    path = tmp_path / "calibrations.db"
    db = LocalCalibrationDB(path, "hispec")
    db.add(dark(1, id="1b4e28ba-2fa1-4d2b-883f-0016d3cca427", filename="d1.fits"))
    db.close()
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        reader = LocalCalibrationDB(path, "hispec", timeout=0.1)
        assert reader.query_filename("d1.fits")["cal_type"] == "dark"
        reader.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_missing_table_or_index_is_created_at_opening(tmp_path):
    path = tmp_path / "calibrations.db"
    LocalCalibrationDB(path, "hispec").close()
    with sqlite3.connect(path) as conn:
        conn.execute('DROP INDEX "ix_hispec_origin"')
        conn.execute('DROP TABLE "_koa_uses"')
    LocalCalibrationDB(path, "hispec").close()
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"ix_hispec_origin", "_koa_uses"} <= names


def local_retractions(cache: Path) -> set[str]:
    with sqlite3.connect(cache / "database" / DB) as conn:
        return {row[0] for row in conn.execute('SELECT id FROM "_koa_retractions"')}


def forget_retractions(cache: Path) -> None:
    with sqlite3.connect(cache / "database" / DB) as conn:
        conn.execute('DELETE FROM "_koa_retractions"')


def test_an_unchanged_read_only_cache_is_not_read_again_at_opening(tmp_path, monkeypatch):
    shared, own = tmp_path / "shared", tmp_path / "own"
    with CalibrationStore("hispec", str(shared), connect_remote=False) as store:
        _, first = store.register_calibration(FileModel(dark(1)))
        store.retract(first["id"], "bad bias level")
    monkeypatch.setenv("KOA_CALIBRATION_CACHE_READONLY", str(shared))
    with CalibrationStore("hispec", str(own), connect_remote=False) as store:
        assert store.local_db.query_id(first["id"]) is not None
    assert local_retractions(own) == {first["id"]}

    # What the shared cache holds is in the own database already: an opening
    # that read it again would bring the retraction back.
    forget_retractions(own)
    CalibrationStore("hispec", str(own), connect_remote=False).close()
    assert local_retractions(own) == set()

    with CalibrationStore("hispec", str(shared), connect_remote=False) as store:
        _, second = store.register_calibration(FileModel(dark(2)))
    with CalibrationStore("hispec", str(own), connect_remote=False) as store:
        assert store.local_db.query_id(second["id"]) is not None
    assert local_retractions(own) == {first["id"]}

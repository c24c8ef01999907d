"""A run manifest is never written through a link planted at its temporary name or its name."""

from __future__ import annotations

import json
import os

from koa_middleware import CalibrationStore
from support.models import FileModel, dark

SENTINEL = b"sentinel: these bytes must never change\n"


def test_a_link_planted_at_the_manifest_s_temporary_name_is_not_written_through(
    tmp_path, no_koa_environment
):
    sentinel = tmp_path / "outside" / "sentinel.txt"
    sentinel.parent.mkdir()
    sentinel.write_bytes(SENTINEL)
    runs = tmp_path / "runs"
    runs.mkdir()
    manifest = runs / "run.json"
    # Whoever may write the run folder plants links at the temporary name and the name.
    (runs / f".run.json.{os.getpid()}.part").symlink_to(sentinel)
    manifest.symlink_to(sentinel)
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        _, record = store.register_calibration(FileModel(dark(1)))
        with store.record_manifest(manifest):
            store.get_calibration(record["id"])
    assert sentinel.read_bytes() == SENTINEL
    assert not manifest.is_symlink()
    document = json.loads(manifest.read_text())
    assert [e["chosen"]["id"] for e in document["entries"]] == [record["id"]]
    assert sorted(p.name for p in runs.iterdir()) == ["run.json"]

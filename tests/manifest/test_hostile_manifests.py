"""Manifests we are handed: bounded, regular files only, and each pin checked against its id.

Every hostile manifest is made in the test's folder and read in a child process
with a memory limit and a deadline (support.hostile_files), so that a reader
that reads ``/dev/zero`` forever, or waits on a FIFO, fails the test and not
the machine. Each fault must be a ``ManifestError`` naming the file and the
fault.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from koa_middleware import CalibrationStore
from koa_middleware.errors import ManifestError
from koa_middleware.manifest import MAX_MANIFEST_BYTES, read_manifest, verify_manifest
from support.hostile_files import call_in_child, deep_json, fifo, link_to_dev_zero
from support.koa_cal import cli_env, koa_cal

READ = "koa_middleware.manifest:read_manifest"


def recorded(manifest: Path) -> dict:
    return json.loads(manifest.read_text())


def assert_manifest_error(outcome: dict, path: Path, *words: str) -> None:
    assert outcome["error"] == "ManifestError", outcome
    assert str(path) in outcome["message"], outcome
    for word in words:
        assert word in outcome["message"], outcome


def test_deep_nesting_is_a_manifest_error(tmp_path, manifest):
    document = recorded(manifest)
    text = json.dumps(document).replace(
        '"entries": [', '"junk": ' + deep_json(200_000) + ', "entries": ['
    )
    deep = tmp_path / "deep.json"
    deep.write_text(text)
    assert_manifest_error(call_in_child(READ, str(deep)), deep, "levels deep")


def test_nesting_within_the_bound_is_read(tmp_path, manifest):
    document = recorded(manifest)
    document["entries"][0]["input"]["metadata"]["note"] = json.loads(deep_json(30))
    path = tmp_path / "nested.json"
    path.write_text(json.dumps(document))
    assert len(read_manifest(path)["entries"]) == len(document["entries"])


def test_a_pin_without_a_file_name_is_a_manifest_error(tmp_path, manifest, cache):
    document = recorded(manifest)
    del document["entries"][2]["chosen"]["filename"]
    path = tmp_path / "nofilename.json"
    path.write_text(json.dumps(document))
    outcome = call_in_child(READ, str(path))
    assert_manifest_error(outcome, path, "Entry 3", "filename")
    with CalibrationStore("hispec", cache, connect_remote=False) as store:
        with pytest.raises(ManifestError, match="Entry 3 .*filename"):
            verify_manifest(store.cache, path)


@pytest.mark.parametrize(
    ("where", "value"),
    [("metadata", ["a", "list"]), ("selector", ["a", "list"]), ("parameters", "text")],
)
def test_entries_of_the_wrong_shape_are_manifest_errors(tmp_path, manifest, where, value):
    document = recorded(manifest)
    entry = document["entries"][0]
    if where == "metadata":
        entry["input"]["metadata"] = value
    elif where == "selector":
        entry["selector"] = value
    else:
        entry["selector"]["parameters"] = value
    path = tmp_path / "shape.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ManifestError, match=f"Entry 1 of the manifest {path}.*{where}"):
        read_manifest(path)


def test_a_link_to_dev_zero_is_a_manifest_error(tmp_path):
    link = link_to_dev_zero(tmp_path / "zero.json")
    assert_manifest_error(call_in_child(READ, str(link)), link, "symbolic link")


def test_a_link_to_a_manifest_is_refused(tmp_path, manifest):
    link = tmp_path / "latest.json"
    link.symlink_to(manifest)
    assert_manifest_error(call_in_child(READ, str(link)), link, "symbolic link")


def test_a_fifo_is_a_manifest_error_not_a_hang(tmp_path):
    pipe = fifo(tmp_path / "pipe.json")
    assert_manifest_error(call_in_child(READ, str(pipe)), pipe, "not a regular file", "FIFO")


def test_a_folder_is_a_manifest_error(tmp_path):
    folder = tmp_path / "folder.json"
    folder.mkdir()
    outcome = call_in_child(READ, str(folder))
    assert outcome["error"] == "ManifestError" and str(folder) in outcome["message"], outcome


def test_a_manifest_beyond_the_bound_is_refused_before_it_is_parsed(tmp_path, manifest):
    assert MAX_MANIFEST_BYTES == 64 << 20
    big = tmp_path / "big.json"
    shutil.copy(manifest, big)
    with big.open("r+b") as handle:
        handle.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: no disk used
    assert_manifest_error(call_in_child(READ, str(big)), big, "more than the", "allowed")


def test_manifest_show_names_the_file_and_the_fault(tmp_path, manifest):
    link = link_to_dev_zero(tmp_path / "zero.json")
    result = koa_cal("manifest", "show", str(link), env=cli_env(tmp_path), timeout=60)
    assert result.returncode == 1
    assert str(link) in result.stderr and "symbolic link" in result.stderr
    assert "Traceback" not in result.stderr


# -- item 11: a pin is checked against the record of its own id ---------------------------


def swapped_pin(tmp_path: Path, manifest: Path, cache: str) -> tuple[Path, dict, dict]:
    """A manifest whose pin of A carries B's file name and MD5; A's file removed from the cache."""
    document = recorded(manifest)
    chosen = [entry["chosen"] for entry in document["entries"]]
    a = dict(chosen[0])
    b = dict(next(c for c in chosen if c["id"] != a["id"] and c["file_md5"] != a["file_md5"]))
    for pin in chosen:
        if pin["id"] == a["id"]:
            pin["filename"], pin["file_md5"] = b["filename"], b["file_md5"]
    path = tmp_path / "swapped.json"
    path.write_text(json.dumps(document))
    with CalibrationStore("hispec", cache, connect_remote=False) as store:
        store.layout.path_for(a["filename"]).unlink()
    return path, a, b


def test_verify_reports_a_pin_whose_file_name_is_not_its_ids(tmp_path, manifest, cache):
    path, a, b = swapped_pin(tmp_path, manifest, cache)
    with CalibrationStore("hispec", cache, connect_remote=False) as store:
        problems = verify_manifest(store.cache, path)
    assert [p["id"] for p in problems] == [a["id"]]
    problem = problems[0]["problem"]
    assert b["filename"] in problem and a["filename"] in problem and a["id"] in problem


def test_verify_reports_a_pin_whose_md5_is_not_its_ids(tmp_path, manifest, cache):
    document = recorded(manifest)
    a = dict(document["entries"][0]["chosen"])
    wrong = "0" * 32
    for entry in document["entries"]:
        if entry["chosen"]["id"] == a["id"]:
            entry["chosen"]["file_md5"] = wrong
    path = tmp_path / "md5.json"
    path.write_text(json.dumps(document))
    with CalibrationStore("hispec", cache, connect_remote=False) as store:
        problems = verify_manifest(store.cache, path)
    assert [p["id"] for p in problems] == [a["id"]]
    assert wrong in problems[0]["problem"] and a["file_md5"] in problems[0]["problem"]


def test_manifest_verify_command_fails_on_a_swapped_pin(tmp_path, manifest, cache):
    path, a, b = swapped_pin(tmp_path, manifest, cache)
    env = cli_env(tmp_path, KOA_CALIBRATION_CACHE=cache)
    result = koa_cal("manifest", "verify", str(path), env=env)
    assert result.returncode == 1, result.stdout
    assert "Every pinned file is here" not in result.stdout
    assert a["id"] in result.stdout and b["filename"] in result.stdout
    assert koa_cal("manifest", "verify", str(manifest), env=env).returncode == 1  # A is gone


def test_verify_passes_an_intact_manifest(manifest, cache):
    with CalibrationStore("hispec", cache, connect_remote=False) as store:
        assert verify_manifest(store.cache, manifest) == []

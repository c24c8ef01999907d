"""``koa-archive migrate-storage``: an archive's files copied to a bucket, each verified."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from support.archive import archive_command, md5_hex, publish


def _migrate(archive, s3_bucket, *extra: str) -> subprocess.CompletedProcess:
    argv = [
        "migrate-storage",
        "--from",
        str(archive.root),
        *(["--db", archive.server.db_url] if archive.server.db_url else []),
        "--to",
        s3_bucket.url,
        "--s3-endpoint-url",
        s3_bucket.endpoint.url,
        *extra,
    ]
    return subprocess.run(archive_command(*argv), capture_output=True, text=True, timeout=120)


def test_migrate_copies_every_file_then_the_archive_serves_them_from_the_bucket(
    start_archive, start_s3_archive, s3_bucket
):
    archive = start_archive()
    client = archive.client("write")
    files = {}
    for size in (0, 1000, 9 * 1024 * 1024):
        data = os.urandom(size)
        files[publish(client, data)["id"]] = data

    result = _migrate(archive, s3_bucket)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "copied 3, already present 0, failed 0 (of 3 files)"
    assert s3_bucket.objects() == {s3_bucket.key("hispec", i): len(d) for i, d in files.items()}
    for cal_id, data in files.items():
        assert s3_bucket.read(s3_bucket.key("hispec", cal_id)) == data

    # Run again: nothing is sent twice.
    again = _migrate(archive, s3_bucket)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "copied 0, already present 3, failed 0 (of 3 files)"

    # The same catalog, served from the bucket.
    archive.server.stop()
    moved = start_s3_archive(db_url=archive.server.db_url, root=archive.root, tokens=archive.tokens)
    for cal_id, data in files.items():
        assert moved.client("read").get(f"hispec/files/{cal_id}").content == data


@pytest.mark.parametrize("catalog_url", [None], ids=["sqlite"])
def test_a_damaged_or_missing_source_file_is_reported_and_not_copied(start_archive, s3_bucket):
    archive = start_archive()
    client = archive.client("write")
    good = publish(client, b"good bytes")
    damaged = publish(client, b"damaged bytes")
    missing = publish(client, b"missing bytes")
    folder = archive.root / "files" / "hispec"
    (folder / damaged["id"]).write_bytes(b"Damaged bytes")
    (folder / missing["id"]).unlink()

    result = _migrate(archive, s3_bucket)
    assert result.returncode == 1
    assert (
        f"failed\thispec/{damaged['id']}\tthe source file has MD5 {md5_hex(b'Damaged bytes')}"
        in (result.stderr)
    )
    assert f"failed\thispec/{missing['id']}\tthe catalog lists this file" in result.stderr
    assert "run the command again" in result.stderr
    assert result.stdout.splitlines()[-1] == "copied 1, already present 0, failed 2 (of 3 files)"
    assert set(s3_bucket.objects()) == {s3_bucket.key("hispec", good["id"])}
    assert s3_bucket.uploads() == []


@pytest.mark.parametrize("catalog_url", [None], ids=["sqlite"])
def test_an_object_with_other_bytes_in_the_bucket_is_reported(start_archive, s3_bucket):
    archive = start_archive()
    record = publish(archive.client("write"), b"the archive's bytes")
    key = s3_bucket.key("hispec", record["id"])
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=b"someone else's")

    result = _migrate(archive, s3_bucket)
    assert result.returncode == 1
    assert "the target already holds other bytes" in result.stderr
    assert s3_bucket.read(key) == b"someone else's"  # never replaced


def test_migrate_needs_an_s3_url(tmp_path):
    argv = ["migrate-storage", "--from", str(tmp_path), "--to", str(tmp_path / "elsewhere")]
    result = subprocess.run(archive_command(*argv), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "s3://BUCKET/PREFIX" in result.stderr


def test_ingest_stores_into_the_bucket(tmp_path, start_s3_archive, s3_bucket):
    path = tmp_path / "dark_0.dat"
    data = os.urandom(10 * 1024 * 1024)
    path.write_bytes(data)
    sidecar = {"cal_type": "dark", "datetime_obs": "2024-02-01 03:00:00", "spectrograph": "red"}
    path.with_name(path.name + ".json").write_text(json.dumps(sidecar))
    archive = start_s3_archive()
    argv = ["ingest", "--root", str(archive.root), "--instrument", "hispec", str(path)]
    result = subprocess.run(
        archive_command(*argv, *s3_bucket.server_args), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    cal_id, name, version = result.stdout.split()
    assert (name, version) == ("dark_0.dat", "001")
    assert s3_bucket.read(s3_bucket.key("hispec", cal_id)) == data
    assert archive.client("read").get(f"hispec/files/{cal_id}").content == data

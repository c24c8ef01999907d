"""koa-cal commands against a real koa-archive on a loopback port, run as a subprocess."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import fastapi  # noqa: F401  (a dependency: missing, it must fail, not skip)
import pytest

from support.archive import ArchiveServer, create_token
from support.koa_cal import (
    cli_env,
    closed_port_url,
    koa_cal,
    one_error_line,
    records_in,
    snapshot,
    write_cal,
)


@dataclass
class Archive:
    server: ArchiveServer
    write_token: str
    read_token: str

    @property
    def url(self) -> str:
        return self.server.base_url


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    with ArchiveServer(root / "archive", instruments=("hispec",)) as server:
        yield Archive(server, create_token(server.root, "write"), create_token(server.root, "read"))


@pytest.fixture(scope="module")
def publisher_env(tmp_path_factory, archive):
    base = tmp_path_factory.mktemp("publisher")
    return cli_env(
        base,
        KOA_CALIBRATION_CACHE=str(base / "cache"),
        KOA_CALIBRATIONS_URL=archive.url,
        KOA_API_TOKEN=archive.write_token,
        KOA_CALIBRATION_ORIGIN="KECK",
    )


@pytest.fixture(scope="module")
def published(tmp_path_factory, publisher_env) -> dict[str, Path]:
    """Three calibrations registered by a publisher and pushed to the archive (once per module)."""
    incoming = tmp_path_factory.mktemp("incoming")
    files = [
        write_cal(incoming / f"{kind}_{day}.fits", float(day), IMAGETYP=kind,
                  DATE_OBS=f"2025-03-0{day}T02:00:00", SPECTROG="yJ", INSTERA="era1")
        for kind, day in (("DARK", 1), ("DARK", 2), ("FLAT", 1))
    ]  # fmt: skip
    assert koa_cal("register", *map(str, files), env=publisher_env).returncode == 0
    result = koa_cal("push", env=publisher_env)
    assert result.returncode == 0, result.stderr
    assert "Pushed 3 calibrations and 0 retractions," in result.stdout
    return {path.name: path for path in files}


@pytest.fixture
def pipeline_env(tmp_path, archive):
    """A fresh pipeline cache that reads the archive with a read token."""
    return cli_env(tmp_path, KOA_CALIBRATIONS_URL=archive.url, KOA_API_TOKEN=archive.read_token)


def cache_file(tmp_path: Path, name: str) -> Path:
    return tmp_path / "cache" / "calibrations" / "hispec" / name


def test_push_summary_and_remote_query(tmp_path, publisher_env, pipeline_env, published):
    again = json.loads(koa_cal("--json", "push", env=publisher_env).stdout)
    assert again["pushed"] == 0 and again["records"] == []
    remote = koa_cal("query", "--source", "remote", "--format", "json", env=pipeline_env)
    assert remote.returncode == 0, remote.stderr
    records = json.loads(remote.stdout)
    assert sorted(r["filename"] for r in records) == sorted(published)
    assert {r["origin"] for r in records} == {"KECK"}
    darks = koa_cal("query", "--source", "remote", "--cal-type", "dark", "--format", "json",
                    env=pipeline_env)  # fmt: skip
    assert len(json.loads(darks.stdout)) == 2
    assert not (tmp_path / "cache").exists()  # asking the archive creates no cache


def test_sync_records_then_files_status_and_verify(tmp_path, pipeline_env, published):
    before = koa_cal("status", env=pipeline_env)
    assert before.returncode == 1
    assert "No calibration cache for hispec" in one_error_line(before)
    assert not (tmp_path / "cache").exists()
    result = koa_cal("sync", env=pipeline_env)
    assert result.returncode == 0, result.stderr
    assert "Pulled 3 new or changed records" in result.stdout
    status = json.loads(koa_cal("--json", "status", env=pipeline_env).stdout)
    assert status["records"] == 3 and status["files_not_downloaded"] == 3
    assert (status["archive"]["not_pulled"], status["archive"]["not_pushed"]) == (0, 0)
    assert status["local_last_updated"] == status["archive"]["last_updated"]
    files = json.loads(koa_cal("--json", "sync", "--files", env=pipeline_env).stdout)
    assert (files["records_added"], files["files_downloaded"]) == (0, 3)
    for name, original in published.items():
        assert cache_file(tmp_path, name).read_bytes() == original.read_bytes()
    assert koa_cal("verify", env=pipeline_env).returncode == 0
    incremental = json.loads(
        koa_cal("--json", "sync", "--mode", "last_updated", env=pipeline_env).stdout
    )
    assert incremental["records_added"] == 0 and incremental["records_total"] == 3
    text = koa_cal("status", env=pipeline_env).stdout
    assert "not downloaded:      0 files" in text and "dark" in text and "KECK" in text


def test_get_downloads_what_is_missing(tmp_path, publisher_env, pipeline_env, published):
    ids = {r["filename"]: r["id"] for r in records_in(publisher_env)}
    # never synced: the record and the file come from the archive
    result = koa_cal("get", ids["DARK_1.fits"], env=pipeline_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(cache_file(tmp_path, "DARK_1.fits"))
    assert Path(result.stdout.strip()).read_bytes() == published["DARK_1.fits"].read_bytes()
    assert koa_cal("sync", env=pipeline_env).returncode == 0
    by_name = koa_cal("--json", "get", "FLAT_1.fits", "DARK_2.fits", env=pipeline_env)
    rows = json.loads(by_name.stdout)
    assert [r["id"] for r in rows] == [ids["FLAT_1.fits"], ids["DARK_2.fits"]]
    assert all(Path(r["path"]).read_bytes() == published[r["filename"]].read_bytes() for r in rows)
    unknown = koa_cal("get", "0b4e28ba-2fa1-4d2b-883f-0016d3cca427", env=pipeline_env)
    assert unknown.returncode == 1
    assert "neither in the local cache nor on the archive" in one_error_line(unknown)


def test_verify_repair_fetches_fresh_copies(tmp_path, pipeline_env, published):
    assert koa_cal("sync", "--files", env=pipeline_env).returncode == 0
    cache_file(tmp_path, "DARK_1.fits").unlink()
    corrupt = cache_file(tmp_path, "DARK_2.fits")
    corrupt.write_bytes(corrupt.read_bytes()[:-10])
    result = koa_cal("--json", "verify", "--repair", env=pipeline_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {p["filename"]: p["repaired"] for p in report["problems"]} == {
        "DARK_1.fits": True,
        "DARK_2.fits": True,
    }
    for name, original in published.items():
        assert cache_file(tmp_path, name).read_bytes() == original.read_bytes()
    assert koa_cal("verify", env=pipeline_env).returncode == 0


@pytest.mark.parametrize(
    "command",
    [
        ["sync"],
        ["sync", "--files"],
        ["push"],
        ["query", "--source", "remote"],
        ["get", "00000000-0000-4000-8000-000000000000"],
        ["verify", "--repair"],
    ],
)
def test_unreachable_archive_is_one_line_and_writes_nothing(tmp_path, command):
    env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=closed_port_url(), KOA_API_TOKEN="t")
    result = koa_cal("--retries", "0", *command, env=env)
    assert result.returncode == 1
    assert "cannot be reached" in one_error_line(result)
    assert not (tmp_path / "cache").exists()


def test_url_option_wins_and_status_shows_the_local_part(tmp_path, pipeline_env, published):
    assert koa_cal("sync", "--files", env=pipeline_env).returncode == 0
    before = snapshot(tmp_path / "cache" / "calibrations")
    records = records_in(pipeline_env)
    closed = closed_port_url()
    result = koa_cal("--url", closed, "--retries", "0", "sync", env=pipeline_env)
    assert result.returncode == 1 and closed.split("/api")[0] in one_error_line(result)
    status = koa_cal("--url", closed, "--retries", "0", "status", env=pipeline_env)
    assert status.returncode == 1
    assert "cannot be reached" in one_error_line(status)
    assert "records:             3" in status.stdout and "unreachable" in status.stdout
    assert snapshot(tmp_path / "cache" / "calibrations") == before
    assert records_in(pipeline_env) == records


def test_bad_token(tmp_path, archive, published):
    env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=archive.url, KOA_API_TOKEN="koa_not-a-real-token")
    for command in (["sync"], ["query", "--source", "remote"], ["get", "DARK_1.fits"]):
        result = koa_cal(*command, env=env)
        assert result.returncode == 1
        line = one_error_line(result)
        assert "401" in line and "refused the bearer token from KOA_API_TOKEN" in line
        assert "koa_not-a-real-token" not in result.stdout + result.stderr
    assert "No calibration cache" in one_error_line(koa_cal("status", env=env))
    mine = write_cal(tmp_path / "in" / "BIAS_4.fits", IMAGETYP="BIAS", DATE_OBS="2025-03-04T01:00",
                     SPECTROG="yJ")  # fmt: skip
    assert koa_cal("register", str(mine), env=env).returncode == 0
    status = koa_cal("status", env=env)
    assert status.returncode == 1
    assert "refused the bearer token from KOA_API_TOKEN (401)" in one_error_line(status)
    assert "records:             1" in status.stdout


def test_no_credentials_says_so(tmp_path, archive, published):
    env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=archive.url)
    for command in (["sync"], ["query", "--source", "remote"]):
        result = koa_cal(*command, env=env)
        assert result.returncode == 1
        line = one_error_line(result)
        assert "401" in line and "no credentials" in line
    assert not (tmp_path / "cache").exists()


def test_bad_token_on_a_fresh_machine_writes_nothing(tmp_path, archive, published):
    env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=archive.url, KOA_API_TOKEN="koa_wrong")
    result = koa_cal("sync", env=env)
    assert result.returncode == 1
    one_error_line(result)
    assert not (tmp_path / "cache").exists()


def test_push_with_a_read_token_is_refused(tmp_path, archive, published):
    reader = cli_env(tmp_path, KOA_CALIBRATIONS_URL=archive.url, KOA_API_TOKEN=archive.read_token)
    extra = write_cal(tmp_path / "in" / "ARC_3.fits", IMAGETYP="ARC",
                      DATE_OBS="2025-03-03T03:00:00", SPECTROG="yJ")  # fmt: skip
    assert koa_cal("register", str(extra), env=reader).returncode == 0
    result = koa_cal("push", env=reader)
    assert result.returncode == 1
    assert "403" in one_error_line(result)
    remote = json.loads(
        koa_cal("query", "--source", "remote", "--format", "json", env=reader).stdout
    )
    assert "ARC_3.fits" not in {r["filename"] for r in remote}

"""The koa-archive command: tokens, ingest, serve's options and clean shutdown."""

from __future__ import annotations

import json
import signal
import subprocess

import httpx

from support.archive import ArchiveServer, archive_command, create_token, md5_hex
from support.cli_archive import wait_for


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(archive_command(*args), capture_output=True, text=True, timeout=60)


def db_args(url: str | None) -> list[str]:
    return ["--db", url] if url else []


def test_version_and_short_help():
    from koa_middleware import __version__

    version = run("--version")
    assert (
        version.returncode == 0 and version.stdout.strip() == f"koa-archive, version {__version__}"
    )
    for flag in ("-h", "--help"):
        helped = run(flag)
        assert helped.returncode == 0 and "serve" in helped.stdout and "ingest" in helped.stdout
    sub = run("serve", "-h")
    assert sub.returncode == 0 and "--body-timeout" in sub.stdout


def test_tokens_create_list_revoke(tmp_path, catalog_url):
    root = tmp_path / "archive"
    writer = create_token(root, "write", db_url=catalog_url, name="pipeline")
    reader = create_token(root, "read", db_url=catalog_url)
    assert writer.startswith("koa_") and len(writer) > 40 and writer != reader

    listing = run("token", "list", "--root", str(root), *db_args(catalog_url))
    assert listing.returncode == 0
    rows = [line.split("\t") for line in listing.stdout.splitlines()]
    assert [row[:2] for row in rows][0] == ["pipeline", "write"]
    assert sorted(row[1] for row in rows) == ["read", "write"]
    assert writer not in listing.stdout and reader not in listing.stdout

    duplicate = run(
        "token",
        "create",
        "--root",
        str(root),
        *db_args(catalog_url),
        "--scope",
        "read",
        "--name",
        "pipeline",
    )
    assert duplicate.returncode != 0 and "exists already" in duplicate.stderr

    with ArchiveServer(root, db_url=catalog_url) as server:
        headers = {"Authorization": f"Bearer {writer}"}
        assert httpx.get(server.base_url + "/hispec/query", headers=headers).status_code == 200
        revoked = run("token", "revoke", "--root", str(root), *db_args(catalog_url), "pipeline")
        assert revoked.returncode == 0
        # Revocation reaches the running server at once: tokens live in the shared catalog.
        assert httpx.get(server.base_url + "/hispec/query", headers=headers).status_code == 401
        assert writer not in server.log_text()
    missing = run("token", "revoke", "--root", str(root), *db_args(catalog_url), "pipeline")
    assert missing.returncode != 0 and "No token named" in missing.stderr


def test_ingest_with_json_sidecars(tmp_path, catalog_url):
    root = tmp_path / "archive"
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    files = []
    for index, cal_type in enumerate(["dark", "dark", "flat"]):
        path = incoming / f"{cal_type}_{index}.dat"
        path.write_bytes(f"{cal_type} data {index}".encode() * 1000)
        sidecar = {
            "cal_type": cal_type,
            "datetime_obs": f"2024-02-0{index + 1} 03:00:00",
            "spectrograph": "red",
            "last_updated": "1999-01-01T00:00:00.000",
        }
        path.with_name(path.name + ".json").write_text(json.dumps(sidecar))
        files.append(path)
    result = run(
        "ingest",
        "--root",
        str(root),
        *db_args(catalog_url),
        "--instrument",
        "hispec",
        *map(str, files),
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    # The HISPEC profile's families hold datetime_obs: darks of two nights are two
    # families, each at version 001 (as registration in a store numbers them).
    assert [(name, version) for _, name, version in lines] == [
        ("dark_0.dat", "001"),
        ("dark_1.dat", "001"),
        ("flat_2.dat", "001"),
    ]

    token = create_token(root, "read", db_url=catalog_url)
    with ArchiveServer(root, db_url=catalog_url) as server:
        client = httpx.Client(
            base_url=server.base_url + "/", headers={"Authorization": f"Bearer {token}"}
        )
        for (cal_id, name, version), path in zip(lines, files, strict=True):
            record = client.get("hispec/query", params={"cal_id": cal_id}).json()
            data = path.read_bytes()
            assert record["filename"] == name and record["cal_version"] == version
            assert record["origin"] == "KECK" and record["spectrograph"] == "red"
            assert record["file_md5"] == md5_hex(data) and record["file_size"] == len(data)
            assert record["last_updated"] > "2020"  # server-set, not taken from the sidecar
            assert client.get(f"hispec/files/{cal_id}").content == data
        client.close()

    # A file with neither FITS header nor sidecar is refused; the others still go in.
    lonely = incoming / "lonely.dat"
    lonely.write_bytes(b"x")
    extra = incoming / "arc_9.dat"
    extra.write_bytes(b"arc")
    extra.with_name("arc_9.dat.json").write_text(
        json.dumps(
            {
                "cal_type": "arc",
                "datetime_obs": "2024-01-01T00:00:00",
                "origin": "local",
                "spectrograph": "red",
            }
        )
    )
    mixed = run(
        "ingest",
        "--root",
        str(root),
        *db_args(catalog_url),
        "--instrument",
        "hispec",
        str(lonely),
        str(extra),
    )
    assert mixed.returncode == 1
    assert "lonely.dat.json" in mixed.stderr
    assert mixed.stdout.strip().endswith("arc_9.dat\t001")


def test_ingest_fits(tmp_path):
    from astropy.io import fits

    import koa_middleware.fits as fits_module  # our own module: if it fails to import, so does this

    assert hasattr(fits_module, "FITSCalibration")

    path = tmp_path / "master_dark.fits"
    header = fits.Header()
    header["CALTYPE"] = "dark"
    header["DATE-OBS"] = "2024-03-04T05:06:07.5"
    header["EXPTIME"] = 30.0
    fits.PrimaryHDU(header=header).writeto(path)
    root = tmp_path / "archive"
    result = run("ingest", "--root", str(root), "--instrument", "liger", str(path))
    assert result.returncode == 0, result.stderr
    cal_id, name, version = result.stdout.strip().split("\t")
    assert (name, version) == ("master_dark.fits", "001")
    token = create_token(root, "read")
    with ArchiveServer(root) as server:
        headers = {"Authorization": f"Bearer {token}"}
        record = httpx.get(
            server.base_url + "/liger/query", params={"cal_id": cal_id}, headers=headers
        ).json()
    assert record["cal_type"] == "dark"
    assert record["datetime_obs"] == "2024-03-04T05:06:07.500"
    assert record["exptime"] == 30.0
    assert record["file_md5"] == md5_hex(path.read_bytes())


def test_serve_options_and_clean_shutdown(tmp_path):
    root = tmp_path / "archive"
    server = ArchiveServer(
        root,
        instruments=("kpf",),
        protocol=1,
        anonymous_read=True,
        extra_args=("--max-upload-bytes", "10"),
    )
    with server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.base_url.endswith("/api/calibrations")
        assert httpx.get(server.base_url + "/kpf/lastUpdated").json() == {"last_updated": None}
        assert httpx.get(server.base_url + "/hispec/lastUpdated").status_code == 404
        assert httpx.get(server.base_url + "/healthz").status_code == 404  # protocol 1
        server.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert server.process.wait(timeout=30) == 0
        server.start()
        assert server.stop() == 0  # SIGTERM
    bad = run("serve", "--root", str(root), "--db", "mysql://nowhere/x", "--port", "0")
    assert bad.returncode != 0 and "Unsupported --db URL" in bad.stderr
    name = run("serve", "--root", str(root), "--instrument", "../x", "--port", "0")
    assert name.returncode != 0 and "not an instrument name" in name.stderr


def limits_line(server: ArchiveServer) -> str:
    """The line after the listening line, where the server states its limits."""

    def printed() -> list[str]:
        return [line for line in server.stdout_lines() if "limits:" in line]

    wait_for(lambda: printed(), "the limits line")
    (line,) = printed()
    return line


def test_serve_states_its_limits_and_waits_60_seconds_for_a_stalled_body(tmp_path):
    from koa_middleware.archive.connections import default_max_connections, open_file_limit

    with ArchiveServer(tmp_path / "default") as server:
        assert limits_line(server) == (
            "koa-archive limits: add bodies of at most 67,108,864 bytes and 10,000 records; "
            "uploads of any size; a body that brings less than 1,024 bytes a second over 60 s "
            "is dropped; request headers must arrive within 10 s; at most "
            f"{default_max_connections():,} connections at once "
            f"(file limit {open_file_limit():,}).\n"
        )
    options = ("--body-timeout", "2.5", "--max-upload-bytes", "1000")
    options += ("--header-timeout", "3", "--max-connections", "50")
    with ArchiveServer(tmp_path / "set", extra_args=options) as server:
        line = limits_line(server)
    assert "uploads of at most 1,000 bytes" in line and "over 2.5 s" in line
    assert "within 3 s" in line and "at most 50 connections" in line
    for option in ("--header-timeout", "--max-connections"):
        refused = run("serve", "--root", str(tmp_path), "--port", "0", option, "0")
        assert refused.returncode == 2 and option in refused.stderr
    refused = run("serve", "--root", str(tmp_path), "--port", "0", "--body-timeout", "0")
    assert refused.returncode == 2 and "--body-timeout" in refused.stderr
    helped = " ".join(run("serve", "-h").stdout.split())
    assert "default: 60.0" in helped.partition("--body-timeout SECONDS")[2].split("--")[0]

"""koa-cal demo: the whole job end to end, leaving nothing behind."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import fastapi  # noqa: F401  (a dependency: missing, it must fail, not skip)
import httpx
import psutil

from support.koa_cal import cli_env, koa_cal

EXPECTED = {
    # nearest dark within matching spectrograph and era
    ("sci_20250301_0042.fits", "dark"): ("hispec_yj_dark_20250301_v001.fits", "001"),
    ("sci_20250304_0055.fits", "dark"): ("hispec_hk_dark_20250304_v001.fits", "001"),
    ("sci_20250305_0090.fits", "dark"): ("hispec_yj_dark_20250305_v002.fits", "002"),
    # the latest version within two days beats a nearer earlier version
    ("sci_20250303_0013.fits", "flat"): ("hispec_yj_flat_20250302_v002.fits", "002"),
    ("sci_20250306_0021.fits", "flat"): ("hispec_hk_flat_20250305_v003.fits", "003"),
}


def processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(text in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def demo_env(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # The demo must not depend on the user's store settings: give it misleading ones.
    env = cli_env(
        tmp_path,
        TMPDIR=str(scratch),
        KOA_CALIBRATION_ORIGIN="ELSEWHERE",
        KOA_LOCAL_CALIBRATION_DATABASE_FILENAME="other.db",
    )
    return env, scratch


def test_demo_runs_end_to_end_and_cleans_up(tmp_path):
    env, scratch = demo_env(tmp_path)
    result = koa_cal("demo", env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Published 41 calibrations" in out and "Synced 41 records" in out
    for (frame, _kind), (chosen, version) in EXPECTED.items():
        line = next(row for row in out.splitlines() if row.startswith(frame) and chosen in row)
        assert f" {version} " in line and line.rstrip().endswith("yes")
    assert "NO" not in out.split()
    assert re.search(
        r"Its web pages, open while the demo runs: http://127\.0\.0\.1:\d+/ui/hispec/\n", out
    )
    # nothing left: no temporary folder, nothing in HOME or the working folder, no server
    assert list(scratch.iterdir()) == []
    assert list((tmp_path / "home").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "tmp"]
    assert processes_mentioning(str(scratch)) == []


def test_demo_json_and_keep(tmp_path):
    env, scratch = demo_env(tmp_path)
    kept = tmp_path / "kept"
    result = koa_cal("--json", "demo", "--keep", str(kept), env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["published"], summary["synced"]) == (41, 41)
    assert summary["kept"] == str(kept)
    assert len(summary["selections"]) == 12 and all(s["verified"] for s in summary["selections"])
    chosen = {
        (s["frame"], s["cal_type"]): (s["chosen"], s["version"]) for s in summary["selections"]
    }
    for key, value in EXPECTED.items():
        assert chosen[key] == value
    assert {"archive", "cache", "publisher", "incoming", "science"} <= {
        p.name for p in kept.iterdir()
    }
    cached = kept / "cache" / "calibrations" / "hispec"
    assert sorted(p.name for p in cached.iterdir()) == sorted({c for c, _ in chosen.values()})
    assert list(scratch.iterdir()) == []
    assert processes_mentioning(str(kept)) == []
    assert summary["pages_url"].endswith("/ui/hispec/")
    assert_serves_the_kept_pages(summary["serve_command"])


def assert_serves_the_kept_pages(command: str) -> None:
    """Run the command ``demo --keep`` printed; the kept archive's pages answer at its port."""
    argv = shlex.split(command)
    assert argv[:2] == ["koa-archive", "serve"] and "--anonymous-read" in argv
    port = argv[argv.index("--port") + 1]
    process = subprocess.Popen(
        [sys.executable, "-m", "koa_middleware.archive", *argv[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout.readline().startswith(
            f"koa-archive listening on http://127.0.0.1:{port}/"
        )
        page = httpx.get(f"http://127.0.0.1:{port}/ui/hispec/browse?cal_type=dark", timeout=30)
        assert page.status_code == 200
        assert "hispec_yj_dark_20250301_v001.fits" in page.text
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()

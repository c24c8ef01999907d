"""Ctrl-C during ``koa-cal sync --files``: exit 130, a one-line summary, and a rerun completes.

A real koa-archive serves 30 files through a relay slow enough that the
download is under way when SIGINT arrives.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import fastapi  # noqa: F401  (a dependency: missing, it must fail, not skip)
import pytest

from support.cli_archive import PublishedArchive, cached_files, wait_for
from support.koa_cal import cli_env, koa_cal
from support.relay import Relay

COUNT = 30
SIZE = 32 * 1024


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    with PublishedArchive(tmp_path_factory.mktemp("archive"), COUNT, SIZE) as archive:
        yield archive


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_sync_files_says_how_far_it_got_and_a_rerun_completes(tmp_path, archive):
    with Relay(archive.server.port, rate=100_000) as relay:
        env = cli_env(
            tmp_path,
            KOA_CALIBRATIONS_URL=relay.rewrite(archive.url),
            KOA_API_TOKEN=archive.read_token,
        )
        cache = tmp_path / "cache"
        process = subprocess.Popen(
            [sys.executable, "-m", "koa_middleware.cli", "sync", "--files"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As in a terminal: a test run started in the background by a shell without
            # job control ignores SIGINT, and a child would inherit that.
            preexec_fn=default_sigint,
        )
        try:
            wait_for(
                lambda: len(cached_files(cache)) >= 3 or process.poll() is not None,
                "the first three files to arrive",
            )
            assert process.poll() is None, process.communicate()
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 130, (stdout, stderr)
        assert "Traceback" not in stderr
        last = stderr.strip().splitlines()[-1]
        found = re.fullmatch(
            r"Interrupted: (\d+) of 30 files downloaded; run the same command to resume\.", last
        )
        assert found, stderr
        done = int(found.group(1))
        assert 3 <= done < COUNT
        # At most the file being placed when Ctrl-C came is there beyond those counted.
        assert done <= len(cached_files(cache)) <= done + 1
        assert stdout == ""

        relay.rate = None  # the same command, on a faster network
        again = koa_cal("--json", "sync", "--files", env=env)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["records_total"] == COUNT and summary["files_skipped"] == 0
    assert COUNT - done - 1 <= summary["files_downloaded"] <= COUNT - done
    assert cached_files(cache) == {r["filename"] for r in archive.records}
    verified = json.loads(koa_cal("--json", "verify", env=env).stdout)
    assert (verified["checked"], verified["ok"], verified["problems"]) == (COUNT, COUNT, [])

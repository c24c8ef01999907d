"""``koa-cal ui`` as a user runs it: a process that prints its URL and serves the pages there."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx

from koa_middleware.cache.local_cache import LocalCache
from koa_middleware.config import resolve_config
from koa_middleware.records import validate_record
from koa_middleware.web import CSP
from support.archive import make_record
from support.koa_cal import cli_env


def test_koa_cal_ui_prints_its_url_and_serves_the_cache_there(tmp_path):
    env = cli_env(tmp_path)
    cache = LocalCache.open(resolve_config("hispec", str(tmp_path / "cache")))
    record = make_record(filename="ui_dark.fits")
    cache.db.add_validated([validate_record(record)])
    cache.close()
    process = subprocess.Popen(
        [sys.executable, "-m", "koa_middleware.cli", "ui"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # the URL comes first, before serving
        found = re.search(r"http://127\.0\.0\.1:(\d+)/ui/", line)
        assert found, (line, process.poll())
        url = found.group(0)
        with httpx.Client(timeout=30) as client:
            home = client.get(url)
            assert home.status_code == 200 and "hispec" in home.text
            assert home.headers["content-security-policy"] == CSP
            browse = client.get(url + "hispec/browse")
            assert "ui_dark.fits" in browse.text
            page = client.get(url + f"hispec/records/{record['id']}")
            assert f"koa-cal --instrument hispec get {record['id']}" in page.text
            assert client.get(url.removesuffix("ui/")).status_code == 307  # / leads to /ui/
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()


def test_koa_cal_ui_refuses_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "koa_middleware.cli", "ui", "--port", str(port)],
            env=cli_env(tmp_path), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1
    assert "choose another --port" in result.stderr

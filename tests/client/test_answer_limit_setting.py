"""The answer-size limit as a store setting: ``KOA_MAX_ANSWER_BYTES``.

The store's archive client reads at most that many bytes (decompressed) of one
answer; a store configured with a small limit refuses a larger answer from a
scripted hostile archive (tests/support/hostile_archive.py) on its sync, and
the error names the setting to raise.
"""

from __future__ import annotations

import pytest

from koa_middleware.client.http import DEFAULT_MAX_ANSWER_BYTES
from koa_middleware.config import resolve_config
from koa_middleware.errors import ArchiveError, ConfigurationError
from koa_middleware.store import CalibrationStore
from support.hostile_archive import HostileArchive

LIMIT = 1 << 20
#: What the loopback socket buffers may hold after the client stopped reading.
SLACK = 32 << 20


@pytest.mark.parametrize(
    "value, expected",
    [("1048576", 1 << 20), ("512M", 512 * 1000**2), ("1GiB", 1 << 30), (" 64 kB ", 64000)],
)
def test_setting_takes_bytes_and_sizes(monkeypatch, tmp_path, value, expected):
    monkeypatch.setenv("KOA_MAX_ANSWER_BYTES", value)
    cfg = resolve_config("hispec", tmp_path)
    assert cfg.max_answer_bytes == expected
    assert cfg.source("max_answer_bytes") == "environment (KOA_MAX_ANSWER_BYTES)"


def test_setting_defaults_to_the_client_default(tmp_path):
    cfg = resolve_config("hispec", tmp_path)
    assert cfg.max_answer_bytes == DEFAULT_MAX_ANSWER_BYTES
    assert cfg.source("max_answer_bytes") == "default"


@pytest.mark.parametrize("value", ["lots", "-5", "1.5.2MB", "12 parsecs", "0", "9" * 5000])
def test_bad_setting_is_refused_naming_the_variable(monkeypatch, tmp_path, value):
    monkeypatch.setenv("KOA_MAX_ANSWER_BYTES", value)
    with pytest.raises(ConfigurationError, match="KOA_MAX_ANSWER_BYTES=") as info:
        CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False)
    assert len(str(info.value)) < 300  # a long value is cut short


def test_store_with_a_small_limit_refuses_an_oversized_answer_on_sync(monkeypatch, tmp_path):
    monkeypatch.setenv("KOA_MAX_ANSWER_BYTES", "1MiB")
    with HostileArchive(2) as archive:
        count = archive.endless(archive.path("changes"), b'{"records": [', b" " * 65536)
        store = CalibrationStore(
            "hispec", str(tmp_path / "cache"), url=archive.base_url, token="t", sync_on_init=False
        )
        try:
            assert store.remote_db.max_answer_bytes == LIMIT
            with pytest.raises(ArchiveError, match=f"larger than {LIMIT} bytes") as info:
                store.sync_records_from_remote()
            assert "KOA_MAX_ANSWER_BYTES" in str(info.value)
            assert len(store.local_db) == 0
        finally:
            store.close()
        assert count.finished()
        assert not count.capped and count.sent < LIMIT + SLACK


def test_koa_cal_sync_honours_the_setting(tmp_path):
    from support.koa_cal import cli_env, koa_cal, one_error_line
    from support.scripted_http import json_answer

    with HostileArchive(2) as archive:
        count = archive.endless(archive.path("changes"), b'{"records": [', b" " * 65536)
        newest = json_answer({"last_updated": "2026-01-01T00:00:00.000"})
        archive.route("GET", archive.path("lastUpdated"), newest)
        env = cli_env(
            tmp_path,
            KOA_CALIBRATIONS_URL=archive.base_url,
            KOA_API_TOKEN="t",
            KOA_MAX_ANSWER_BYTES="1MiB",
        )
        result = koa_cal("sync", env=env)
        assert result.returncode == 1
        line = one_error_line(result)
        assert f"larger than {LIMIT} bytes" in line and "KOA_MAX_ANSWER_BYTES" in line
        assert count.finished()
        assert not count.capped and count.sent < LIMIT + SLACK

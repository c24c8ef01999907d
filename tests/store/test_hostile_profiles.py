"""Instrument profiles we are handed (KOA_INSTRUMENT_PROFILE): regular files of bounded size.

A UTF-16 file, deep nesting, a link to ``/dev/zero`` or a FIFO must each be a
``ConfigurationError`` naming the file, never a ``UnicodeDecodeError``, a
``RecursionError``, a ``MemoryError`` or a hang. Each is read in a child process
with a memory limit and a deadline (support.hostile_files).
"""

from __future__ import annotations

import os

import pytest

from koa_middleware.profiles import MAX_PROFILE_BYTES, PROFILE_ENV
from support.hostile_files import call_in_child, fifo, link_to_dev_zero

PROFILE = """\
instrument = "kpf"
cal_types = ["dark", "flat"]

[families]
default = ["cal_type", "ccd", "datetime_obs"]
"""


def load_in_child(path) -> dict:
    env = {**os.environ, PROFILE_ENV: str(path)}
    return call_in_child("koa_middleware.profiles:load_profile", "kpf", env=env)


def assert_configuration_error(outcome: dict, path, *words: str) -> None:
    assert outcome["error"] == "ConfigurationError", outcome
    assert str(path) in outcome["message"], outcome
    for word in words:
        assert word in outcome["message"], outcome


def test_a_good_profile_is_read(tmp_path):
    path = tmp_path / "kpf.toml"
    path.write_text(PROFILE)
    outcome = load_in_child(path)
    assert outcome["error"] is None and "kpf" in outcome["result"], outcome


def test_a_utf16_profile_is_a_configuration_error(tmp_path):
    path = tmp_path / "kpf.toml"
    path.write_text(PROFILE, encoding="utf-16")
    assert_configuration_error(load_in_child(path), path, "UTF-8")


@pytest.mark.parametrize(
    "nested",
    ["x = " + "[" * 50_000 + "]" * 50_000, "x = " + "{a = " * 50_000 + "1" + "}" * 50_000],
    ids=["arrays", "tables"],
)
def test_deep_nesting_is_a_configuration_error(tmp_path, nested):
    path = tmp_path / "kpf.toml"
    path.write_text(PROFILE + nested + "\n")
    assert_configuration_error(load_in_child(path), path, "levels deep")


def test_a_link_to_dev_zero_is_a_configuration_error(tmp_path):
    link = link_to_dev_zero(tmp_path / "kpf.toml")
    assert_configuration_error(load_in_child(link), link, "symbolic link")


def test_a_fifo_is_a_configuration_error_not_a_hang(tmp_path):
    pipe = fifo(tmp_path / "kpf.toml")
    assert_configuration_error(load_in_child(pipe), pipe, "FIFO")


def test_a_profile_beyond_the_bound_is_refused(tmp_path):
    path = tmp_path / "kpf.toml"
    path.write_text(PROFILE + "# " + "x" * MAX_PROFILE_BYTES + "\n")
    assert_configuration_error(load_in_child(path), path, "more than the")


def test_the_store_refuses_a_hostile_profile_with_a_configuration_error(tmp_path):
    pipe = fifo(tmp_path / "kpf.toml")
    env = {**os.environ, PROFILE_ENV: str(pipe)}
    outcome = call_in_child(
        "koa_middleware:CalibrationStore", "kpf", str(tmp_path / "cache"), None, False, env=env
    )
    assert_configuration_error(outcome, pipe, "FIFO")

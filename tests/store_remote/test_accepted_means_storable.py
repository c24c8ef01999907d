"""Whatever the archive accepts, every client can store: random records through a real archive.

Hypothesis sends random batches to ``/add`` (odd file names, impossible dates,
huge integers, case-clashing columns, non-finite floats...). After each batch,
a fresh CalibrationStore syncs every record the archive holds for the
instrument and must read back each accepted record equal to what was sent.
It runs on a SQLite catalog and on a PostgreSQL one.
"""

from __future__ import annotations

import json
import tempfile
import uuid

import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from koa_middleware import CalibrationStore
from koa_middleware.records import SERVER_FIELDS, validate_record

NAME_CHARS = st.characters(
    codec="utf-8", categories=("L", "N", "P", "S", "Zs", "Cc", "Cf"), exclude_characters="\x00"
)
PLAIN_NAMES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True)
TIMESTAMPS = st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds")) | st.sampled_from(
    ["2025-13-45T99:00:00.000", "2025-02-29T00:00:00.000", "Thu, 12 Feb 2026 00:00:00 GMT"]
)
# A column keeps one kind of value, as a FITS keyword does (a column holding mixed
# kinds is a matter of SQLite's column affinity, not of the record rules).
NUMBERS = st.integers(-(2**63), 2**63 - 1) | st.integers(-(2**70), 2**70)
FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.floats()
KINDS = {
    "gain": NUMBERS,
    "Gain": NUMBERS,
    "exptime": FLOATS,
    "EXPTIME": FLOATS,
    "spectrograph": st.text(max_size=20),
    "SPECTROGRAPH": st.text(max_size=20),
    "is_good": st.booleans(),
}
EXTRA_COLUMNS = st.sets(st.sampled_from(sorted(KINDS)), max_size=3).flatmap(
    lambda names: st.fixed_dictionaries({name: KINDS[name] | st.none() for name in names})
)


@st.composite
def records(draw) -> dict:
    record = {
        "id": str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)), version=4)),
        "filename": draw(PLAIN_NAMES | PLAIN_NAMES | st.text(NAME_CHARS, min_size=1, max_size=30))
        + ".fits",
        "cal_type": draw(st.sampled_from(["dark", "flat", "arc"])),
        "datetime_obs": draw(TIMESTAMPS),
        "origin": draw(st.sampled_from(["KECK", "local", "Ops"])),
        "cal_version": f"{draw(st.integers(1, 999)):03d}",
        "master_cal": draw(st.booleans() | st.sampled_from([0, 1])),
    }
    record.update(draw(EXTRA_COLUMNS))
    return record


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(records(), min_size=1, max_size=3))
def test_every_accepted_record_syncs_into_a_fresh_store_unchanged(
    archive_on_each_catalog, instrument, monkeypatch, batch
):
    archive = archive_on_each_catalog
    base = archive.url(2)
    headers = {
        "Authorization": f"Bearer {archive.tokens['write']}",
        "Content-Type": "application/json",
    }
    # JSON cannot carry NaN or Infinity; Python's encoder writes them anyway, as a
    # careless client would, and the archive must refuse such a body.
    body = json.dumps(batch)
    with httpx.Client(timeout=60) as client:
        answer = client.post(f"{base}/{instrument}/add", content=body, headers=headers)
    assert answer.status_code in (200, 400, 409, 413, 422), answer.text
    accepted = batch if answer.status_code == 200 else []
    event(f"archive answered {answer.status_code}")

    monkeypatch.setenv("KOA_CALIBRATIONS_URL", base)
    monkeypatch.setenv("KOA_API_TOKEN", archive.tokens["read"])
    with tempfile.TemporaryDirectory() as cache:
        with CalibrationStore(instrument, cache) as store:  # syncs on construction
            for sent in accepted:
                stored = store.local_db.query_id(sent["id"])
                assert stored is not None, sent
                for key, value in validate_record(sent, drop=SERVER_FIELDS).items():
                    assert stored[key] == value, (key, stored[key], value)
            assert len(store.local_db) == len(store.remote_db.query(columns="id"))

"""Whatever the archive accepts, every client can store: random records through a real archive.

Hypothesis sends random batches to ``/add`` (odd file names, impossible dates,
huge integers, case-clashing columns, non-finite floats...). After each batch,
a fresh CalibrationStore syncs every record the archive holds for the
instrument and must read back each accepted record equal to what was sent.
It runs on a SQLite catalog and on a PostgreSQL one.

An archive that refused everything would pass that alone, so valid batches
must be accepted and stored: those written out here, and random ones whose
every value is valid (drawn as often as the others, each with a fresh id and
file name, so none can clash with an earlier one). At least a quarter of all
the batches must be accepted.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections import Counter

import httpx
import pytest
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


VALID_TEXT = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")),
                     max_size=20)  # fmt: skip
#: The kinds of KINDS, valid values only, in columns of their own: a random batch
#: may create ``SPECTROGRAPH`` first, and ``spectrograph`` is then refused (rightly).
VALID_KINDS = {
    "detector_gain": st.integers(-(2**63), 2**63 - 1),
    "exposure_time": st.floats(allow_nan=False, allow_infinity=False),
    "grating": VALID_TEXT,
    "is_dark_subtracted": st.booleans(),
}
VALID_EXTRA_COLUMNS = st.sets(st.sampled_from(sorted(VALID_KINDS)), max_size=3).flatmap(
    lambda names: st.fixed_dictionaries({name: VALID_KINDS[name] | st.none() for name in names})
)


@st.composite
def valid_records(draw) -> dict:
    """A record the archive must accept (its id and file name are made fresh when sent)."""
    record = {
        "filename": draw(PLAIN_NAMES) + ".fits",
        "cal_type": draw(st.sampled_from(["dark", "flat", "arc"])),
        "datetime_obs": draw(st.datetimes()).isoformat(timespec="milliseconds"),
        "origin": draw(st.sampled_from(["KECK", "local", "Ops"])),
        "cal_version": f"{draw(st.integers(1, 999)):03d}",
        "master_cal": draw(st.booleans() | st.sampled_from([0, 1])),
    }
    record.update(draw(VALID_EXTRA_COLUMNS))
    return record


def fresh(record: dict) -> dict:
    """``record`` with an id and a file name no earlier batch used."""
    tag = uuid.uuid4()
    return {**record, "id": str(tag), "filename": f"{tag.hex[:12]}_{record['filename']}"}


BATCHES = st.tuples(st.just("valid"), st.lists(valid_records(), min_size=1, max_size=3)) | (
    st.tuples(st.just("random"), st.lists(records(), min_size=1, max_size=3))
)

#: Valid batches: the archive must accept each, and a fresh store must sync it unchanged.
VALID_BATCHES = {
    "plain": [
        {"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427", "filename": "dark_0001.fits",
         "cal_type": "dark", "datetime_obs": "2025-03-01T02:00:00.000", "origin": "KECK",
         "cal_version": "001", "master_cal": True, "spectrograph": "yJ"},
    ],
    "unicode_name_and_floats": [
        {"id": "6f0c2f6e-8a3b-4c1d-9e2f-3a4b5c6d7e8f", "filename": "flat é✓ 2.fits",
         "cal_type": "flat", "datetime_obs": "2024-12-31T23:59:59.999", "origin": "local",
         "cal_version": "999", "master_cal": 0, "exptime": 1.5e-300, "is_good": False},
    ],
    "integer_extremes_and_early_dates": [
        {"id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "filename": "arc_min.fits",
         "cal_type": "arc", "datetime_obs": "0001-01-01T00:00:00.000", "origin": "Ops",
         "cal_version": "002", "master_cal": 1, "gain": -(2**63)},
        {"id": "9f8e7d6c-5b4a-4392-8817-263544536271", "filename": "arc_max.fits",
         "cal_type": "arc", "datetime_obs": "9999-12-31T23:59:59.999", "origin": "Ops",
         "cal_version": "003", "master_cal": 1, "gain": 2**63 - 1, "spectrograph": ""},
    ],
}  # fmt: skip
#: The share of random batches the archive must accept, at least.
ACCEPTED_FLOOR = 0.25


def add_then_sync(archive, instrument: str, monkeypatch, batch: list[dict]) -> tuple[int, str]:
    """Send ``batch`` to the archive's ``/add``; a fresh store syncs it.

    Returns the archive's status and answer.

    Every record of an accepted batch must come back from the store equal to
    what was sent, and the store must hold what the archive holds.
    """
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
    return answer.status_code, answer.text


@pytest.mark.parametrize("name", sorted(VALID_BATCHES))
def test_valid_records_are_accepted_and_stored(archive_on_each_catalog, instrument, monkeypatch,
                                               name):  # fmt: skip
    batch = VALID_BATCHES[name]
    status, text = add_then_sync(archive_on_each_catalog, instrument, monkeypatch, batch)
    assert status == 200, f"the archive refused a valid batch ({name}): {status} {text}"


def test_every_accepted_record_syncs_into_a_fresh_store_unchanged(
    archive_on_each_catalog, instrument, monkeypatch
):
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,  # the floor below counts fresh random batches only
    )
    @given(kind_and_batch=BATCHES)
    def add_random_batch(kind_and_batch):
        kind, batch = kind_and_batch
        if kind == "valid":
            batch = [fresh(record) for record in batch]
        status, text = add_then_sync(archive_on_each_catalog, instrument, monkeypatch, batch)
        event(f"{kind} batch: archive answered {status}")
        if kind == "valid":
            assert status == 200, f"the archive refused a valid batch {batch}: {status} {text}"
        statuses[status] += 1

    add_random_batch()
    share = statuses[200] / sum(statuses.values())
    assert share >= ACCEPTED_FLOOR, f"the archive accepted {share:.0%} of the batches: {statuses}"

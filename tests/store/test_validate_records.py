"""validate_records: the same records and the same errors as validate_record one by one."""

from __future__ import annotations

import json
import math

import pytest

from koa_middleware.client.json_stream import iter_json_items
from koa_middleware.errors import InvalidRecordError
from koa_middleware.record_batches import validate_records
from koa_middleware.records import LOCAL_REQUIRED_FIELDS, validate_record


def record(index: int, **fields) -> dict:
    rec = {
        "id": f"1b4e28ba-2fa1-4d2b-883f-{index:012d}",
        "filename": f"hispec_dark_{index:04d}.fits",
        "cal_type": "dark",
        "datetime_obs": "2024-01-01T00:00:00.000",
        "origin": "KECK",
        "cal_version": "001",
        "last_updated": "2024-02-01T00:00:00.000",
        "file_md5": "0123456789abcdef0123456789abcdef",
        "file_size": 1024,
        "master_cal": 1,
        "mjd_start": 60310.5,
        "exptime": 30,
    }
    rec.update(fields)
    return rec


def one_by_one(records, required=LOCAL_REQUIRED_FIELDS):
    try:
        return [validate_record(rec, required) for rec in records]
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return type(exc), str(exc)


def in_a_batch(records, required=LOCAL_REQUIRED_FIELDS):
    try:
        return validate_records(records, required)
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return type(exc), str(exc)


ODD_VALUES = [
    {"id": "1B4E28BA-2FA1-4D2B-883F-0016D3CCA427"},
    {"id": "not an id"},
    {"id": None},
    {"filename": "../up.fits"},
    {"filename": "tab\there.fits"},
    {"filename": "line\nbreak.fits"},
    {"filename": "é" * 100},
    {"filename": "x" * 256},
    {"filename": ".."},
    {"filename": "back\\slash.fits"},
    {"datetime_obs": "2024-01-01"},
    {"datetime_obs": "2024-13-01T00:00:00.000"},
    {"datetime_obs": "2024-01-01T00:00:00.000\n"},
    {"last_updated": None},
    {"cal_version": "7"},
    {"cal_version": "000"},
    {"cal_version": float("inf")},
    {"origin": " keck "},
    {"origin": "  "},
    {"file_md5": "0123456789ABCDEF0123456789ABCDEF"},
    {"file_md5": "0123456789abcdef0123456789abcdef\n"},
    {"file_md5": "zz"},
    {"file_size": -1},
    {"file_size": True},
    {"file_size": 2**63},
    {"master_cal": "yes"},
    {"master_cal": 2},
    {"master_cal": None},
    {"mjd_start": math.nan},
    {"mjd_start": 7},
    {"exptime": 2**64},
    {"exptime": True},
    {"exptime": [1]},
    {"exptime": "30"},
    {"EXPTIME": 1},
    {"bad name": 1},
]


@pytest.mark.parametrize("odd", ODD_VALUES, ids=lambda odd: repr(odd)[:40])
def test_an_odd_value_in_a_batch_gives_what_one_by_one_gives(odd):
    records = [record(i) for i in range(5)]
    records[3].update(odd)
    records[1]["cal_type"] = None  # an earlier, other problem when cal_type is required
    for required in (LOCAL_REQUIRED_FIELDS, ("id", "filename")):
        expected = one_by_one(records, required)
        got = in_a_batch(records, required)
        assert got == expected
        if isinstance(expected, list):
            assert [list(rec) for rec in got] == [list(rec) for rec in expected]
            assert [[type(v) for v in rec.values()] for rec in got] == [
                [type(v) for v in rec.values()] for rec in expected
            ]


def test_records_of_several_shapes_keep_their_order_and_fields():
    records = [record(0), {**record(1), "extra": "x"}, record(2), dict(reversed(record(3).items()))]
    got = validate_records(records)
    assert got == one_by_one(records)
    assert [list(rec) for rec in got] == [list(rec) for rec in records]
    assert all(rec is not original for rec, original in zip(got, records, strict=True))


def test_not_a_dict_is_refused_as_one_by_one():
    with pytest.raises(InvalidRecordError, match="must be a dict"):
        validate_records([record(0), ["id"]])


def test_shared_values_are_one_object_and_equal():
    shared: dict[str, str] = {}
    first = validate_records([record(0), record(1)], shared=shared)
    second = validate_records([record(2, cal_type="".join(["da", "rk"]))], shared=shared)
    assert first[0]["cal_type"] is second[0]["cal_type"]
    assert second == one_by_one([record(2)])


TRICKY_ITEMS = [
    {"a": "},{"},
    {"b": {"c": 1}, "d": "}, "},
    1,
    "},",
    {"e": [{"f": "}"}]},
    {"g": '\\"},'},
    {"h": None},
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_items_cut_anywhere_decode_as_the_whole(size):
    text = json.dumps(TRICKY_ITEMS * 3).encode()
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    assert [item for _, item in iter_json_items(pieces)] == TRICKY_ITEMS * 3

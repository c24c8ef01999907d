"""LocalCalibrationDB: the steps, lookups and housekeeping that sync and read-only caches use."""

from __future__ import annotations

import uuid

import pytest


def rec(i: int, **extra) -> dict:
    record = {
        "id": str(uuid.UUID(int=i + 1, version=4)),
        "filename": f"cal_{i}.fits",
        "cal_type": "dark",
        "datetime_obs": "2024-01-01T00:00:00.000",
        "last_updated": f"2025-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.000",
    }
    record.update(extra)
    return record


def test_a_failed_step_undoes_its_record_and_its_new_column_only(db):
    with db.write_transaction():
        db.add(rec(0))
        with pytest.raises(RuntimeError), db.savepoint():
            db.add(rec(1, exptime=30.0))
            raise RuntimeError("refused")
        # The column the undone step added is gone: a later record adds it again.
        db.add(rec(2, exptime=60.0))
    assert db.query_id(rec(0)["id"]) is not None
    assert db.query_id(rec(1)["id"]) is None
    assert db.query_id(rec(2)["id"])["exptime"] == 60.0


def test_a_step_outside_a_transaction_is_its_own_transaction(db):
    with db.savepoint():
        db.add(rec(0))
    with pytest.raises(RuntimeError), db.savepoint():
        db.add(rec(1))
        raise RuntimeError("refused")
    assert db.ids_present([rec(0)["id"], rec(1)["id"]]) == {rec(0)["id"]}
    db.add(rec(1))  # the write lock was given back
    assert len(db) == 2


def test_ids_present_answers_for_more_ids_than_one_lookup_takes(db):
    held = [rec(i) for i in range(1200)]
    db.add(held)
    unknown = [str(uuid.uuid4()) for _ in range(300)]
    assert db.ids_present([r["id"] for r in held] + unknown) == {r["id"] for r in held}
    assert db.ids_present([]) == set()


def test_versions_of_names_the_archives_retraction_only(db):
    db.add([rec(0), rec(1), rec(2)])
    archive_said = rec(1, retracted_at="2026-02-01T00:00:00.000", retract_reason="hot pixels")
    db.add(archive_said)
    db.set_retractions({rec(2)["id"]: ("2026-03-01T00:00:00.000", "here only")}, pushed=False)
    unknown = str(uuid.uuid4())
    versions = db.versions_of([rec(i)["id"] for i in range(3)] + [unknown])
    assert unknown not in versions
    assert versions[rec(0)["id"]] == (rec(0)["last_updated"], None)
    assert versions[rec(1)["id"]] == (rec(1)["last_updated"], "2026-02-01T00:00:00.000")
    assert versions[rec(2)["id"]].retracted_at is None


def test_records_updated_after_a_time(db):
    db.add([rec(i) for i in range(5)])
    newer = db.records_updated_after(rec(2)["last_updated"])
    assert [r["id"] for r in newer] == [rec(3)["id"], rec(4)["id"]]
    assert db.records_updated_after(rec(4)["last_updated"]) == []

"""A sync brings the archive's retraction to a record held here with the same last_updated."""

from __future__ import annotations

import pytest

from koa_middleware.client.sync import cursor_key, sync_from_archive
from koa_middleware.database.local_database import LocalCalibrationDB
from koa_middleware.database.selection_view import SelectionView
from support.published import publish

pytestmark = pytest.mark.parametrize("protocol", [2], ids=["v2"])


def copied_without_lifecycle(source: LocalCalibrationDB, path, instrument) -> LocalCalibrationDB:
    """A database holding ``source``'s rows as they are, without publication or retraction.

    This is what a copy from a read-only shared cache holds.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    copy = LocalCalibrationDB(path, instrument)
    copy.add([{k: v for k, v in row.items() if v is not None} for row in source.rows])
    return copy


def chosen_ids(db: LocalCalibrationDB) -> set[str]:
    view = SelectionView(db)
    try:
        return {row["id"] for row in view.query()}
    finally:
        view.close()


def test_a_copy_without_its_retraction_gets_it_from_the_next_sync(
    remote, publisher, local_db, instrument, tmp_path
):
    records = publish(publisher, tmp_path / "files", 4)
    withdrawn = records[1]["id"]
    assert publisher.retract([withdrawn], "hot pixels") == [withdrawn]
    sync_from_archive(local_db, remote)
    retraction = local_db.retraction(withdrawn)
    assert retraction is not None and retraction["reason"] == "hot pixels"

    copy = copied_without_lifecycle(local_db, tmp_path / "copy" / "cal.db", instrument)
    try:
        # Same ids and last_updated as the archive's records; no cursor, no retraction.
        assert [(r["id"], r["last_updated"]) for r in copy.rows] == [
            (r["id"], r["last_updated"]) for r in local_db.rows
        ]
        assert copy.get_meta(cursor_key(remote)) is None
        assert copy.retraction(withdrawn) is None and withdrawn in chosen_ids(copy)

        report = sync_from_archive(copy, remote)

        # Only the record whose retraction was missing is stored again.
        assert [r["id"] for r in report.added] == [withdrawn]
        assert copy.retraction(withdrawn)["retracted_at"] == retraction["retracted_at"]
        assert chosen_ids(copy) == {r["id"] for r in records} - {withdrawn}
        # Held as the archive has it now: the next sync from the start stores nothing.
        copy.set_meta(cursor_key(remote), None)
        assert sync_from_archive(copy, remote).added == []
    finally:
        copy.close()


def test_a_retraction_made_here_and_not_sent_is_not_a_change(remote, publisher, local_db, tmp_path):
    records = publish(publisher, tmp_path / "files", 2)
    sync_from_archive(local_db, remote)
    mine = records[0]["id"]
    local_db.set_retractions({mine: ("2026-03-01T00:00:00.000", "checked here")}, pushed=False)
    local_db.set_meta(cursor_key(remote), None)

    assert sync_from_archive(local_db, remote).added == []
    assert local_db.retraction(mine)["reason"] == "checked here"

"""Concurrent writers and a reader following ``changes``: no seq is skipped or repeated."""

from __future__ import annotations

import pytest

from support.archive import ArchiveServer, make_record
from support.changes_follower import follow_while_writing

WRITERS = 8
PER_WRITER = 500
BATCH = 10


@pytest.mark.slow
def test_eight_writers_and_a_reader_following_changes(start_archive):
    first = start_archive()
    # A second server process on the same catalog: writers spread over both.
    second_server = ArchiveServer(first.root, db_url=first.server.db_url).start()
    try:
        _run(first, second_server.base_url)
    finally:
        second_server.stop()


def _run(archive, second_base: str) -> None:
    import httpx

    written: list[list[str]] = [[] for _ in range(WRITERS)]

    def writer(index: int) -> None:
        base = archive.base if index % 2 == 0 else second_base
        headers = {"Authorization": f"Bearer {archive.tokens['write']}"}
        with httpx.Client(base_url=base + "/", headers=headers, timeout=120) as client:
            for _ in range(PER_WRITER // BATCH):
                batch = [make_record(writer=index) for _ in range(BATCH)]
                response = client.post("hispec/add", json=batch)
                response.raise_for_status()
                written[index].extend(r["id"] for r in batch)

    seen = follow_while_writing(writer, archive.client("read"), WRITERS, page=25)

    all_ids = [cal_id for ids in written for cal_id in ids]
    assert len(all_ids) == WRITERS * PER_WRITER
    seqs = [record["seq"] for record in seen]
    # Every record exactly once, in seq order, with no seq skipped.
    assert seqs == list(range(1, WRITERS * PER_WRITER + 1))
    assert sorted(record["id"] for record in seen) == sorted(all_ids)
    # Each writer's records appear in the order that writer added them.
    for index in range(WRITERS):
        mine = [r["id"] for r in seen if r["writer"] == index]
        assert mine == written[index]

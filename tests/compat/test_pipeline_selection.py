"""Selectors written against the reference choose what it chooses, ties included."""

from __future__ import annotations

import random
import uuid

import pytest
from compat.hispec_pipeline.selectors import NearestDark, NearestDarkOne

from koa_middleware import CalibrationStore
from support.ties import reference_choice


def random_records(rng: random.Random, count: int) -> list[dict]:
    records = []
    for i in range(count):
        mjd = 61100.0 + rng.randrange(12) * 0.5  # a coarse grid: many ties
        records.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "filename": f"cal_{i:04d}.fits",
                "cal_type": rng.choice(["dark", "dark", "flat"]),
                "spectrograph": rng.choice(["yj", "hk"]),
                "datetime_obs": "2026-03-01T00:00:00.000",
                "mjd_start": mjd,
                "origin": "KECK",
                "cal_version": "001",
            }
        )
    return records


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ties_go_to_the_record_added_first_after_bulk_adds(tmp_path, seed, no_koa_environment):
    rng = random.Random(seed)
    records = random_records(rng, 400)
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        start = 0
        while start < len(records):  # bulk adds of random sizes, and single adds
            size = rng.choice([1, 1, 7, 50, 120])
            chunk = records[start : start + size]
            store.local_db.add(chunk if size > 1 else chunk[0])
            start += size
        frames = [
            {"spectrograph": s, "mjd_start": 61100.0 + k * 0.25}
            for s in ("yj", "hk")
            for k in range(-2, 26)  # on the grid, half-way between (ties below/above), outside
        ]
        for frame in frames:
            wanted = reference_choice(records, frame)
            assert NearestDark().select(frame, store.local_db)["id"] == wanted, frame
            assert NearestDarkOne().select(frame, store.local_db)["id"] == wanted, frame


def test_selector_subclass_keeps_its_options(no_koa_environment):
    selector = NearestDark(origin="keck", max_days=3)
    assert selector.origin == "KECK" and selector.max_days == 3

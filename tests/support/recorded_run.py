"""The run behind ``tests/manifest/data/recorded_koa_manifest_1.json``: its calibrations and calls.

The manifest was written by the library before selectors declared their
parameters (every public attribute of a selector was part of its entries), by
running::

    PYTHONPATH=.:tests python3 -c "import sys; from support.recorded_run import main; \\
        main(sys.argv[1])" tests/manifest/data/recorded_koa_manifest_1.json

Nothing here may change in a way that changes the calibrations (ids, bytes,
metadata) or the calls: the tests register the same calibrations and replay the
same calls against the recorded file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from koa_middleware import CalibrationSelector, CalibrationStore
from koa_middleware.selectors import LatestVersionSelector, NearestInTimeSelector
from support.models import FileModel

#: The manifest the run was recorded into.
MANIFEST = Path(__file__).parents[1] / "manifest" / "data" / "recorded_koa_manifest_1.json"


def _calibration(number: int, cal_type: str, night: int, **extra: Any) -> dict:
    record = {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "filename": f"recorded_{cal_type}_{number:02d}.fits",
        "cal_type": cal_type,
        "datetime_obs": f"2024-01-{night:02d}T00:00:00.000",
        "spectrograph": "spec_a",
        "instrument_era": "era1",
        "master_cal": 1,
    }
    record.update(extra)
    return record


#: The calibrations of the run; flats 3 and 4 are versions 001 and 002 of one family.
CALIBRATIONS = [
    _calibration(1, "dark", 1),
    _calibration(2, "dark", 4),
    _calibration(3, "flat", 2),
    _calibration(4, "flat", 2),
    _calibration(5, "dark", 3, spectrograph="spec_b"),
    _calibration(6, "dark", 5, master_cal=0),
    _calibration(7, "flat", 5),
]

#: The science frames (metadata as a pipeline passes it).
FRAMES = [
    {"filename": "sci_recorded_02.fits", "datetime_obs": "2024-01-02T06:00:00",
     "spectrograph": "spec_a", "instrument_era": "era1"},
    {"filename": "sci_recorded_05.fits", "datetime_obs": "2024-01-05T06:00:00",
     "spectrograph": "spec_a", "instrument_era": "era1"},
]  # fmt: skip


class PipelineDark(NearestInTimeSelector):
    """A pipeline's own dark selector: the built-in with its settings fixed."""

    def __init__(self, **kwargs: Any):
        super().__init__("dark", master_only=True, **kwargs)


class RowsWhereDark(CalibrationSelector):
    """A selector written on the base class, as the reference's pipelines write them."""

    def get_candidates(self, input: Any, db: Any, **kwargs: Any) -> Any:
        meta = self.get_metadata(input)
        return db.table.rows_where(
            "cal_type = :cal_type AND spectrograph = :spectrograph",
            {"cal_type": self.cal_type, "spectrograph": meta["spectrograph"],
             "t": meta["datetime_obs"]},
            order_by="ABS(julianday(datetime_obs) - julianday(:t)), id",
        )  # fmt: skip


def selectors() -> list[CalibrationSelector]:
    """The selectors of the run, each with the options it was recorded with."""
    return [
        NearestInTimeSelector("dark"),
        NearestInTimeSelector(
            "dark",
            match=("spectrograph",),
            max_days=3,
            master_only=True,
            origin="LOCAL",
            explain_limit=5,
        ),  # fmt: skip
        LatestVersionSelector("flat", validity_days=7, match="spectrograph", explain_limit=10),
        LatestVersionSelector("flat"),
        PipelineDark(max_days=2),
        RowsWhereDark(cal_type="dark"),
    ]


def file_bytes(record: dict) -> bytes:
    """The bytes of a calibration's file, the same in every run."""
    return hashlib.sha256(record["id"].encode()).digest() * 64


def register(store: CalibrationStore) -> None:
    """Register the run's calibrations into ``store`` (a local store of origin LOCAL)."""
    for record in CALIBRATIONS:
        store.register_calibration(FileModel(dict(record), file_bytes(record)), new_version=True)


def run(store: CalibrationStore) -> list[tuple[dict, CalibrationSelector, dict]]:
    """Select a calibration for each frame with each selector; return (frame, selector, record)."""
    return [
        (frame, selector, store.select_and_get_calibration(frame, selector)[1])
        for frame in FRAMES
        for selector in selectors()
    ]


def pins(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """(input, selector class, pinned id) of each selection a manifest holds, in its order."""
    entries = json.loads(Path(path).read_text())["entries"]
    return [
        (e["input"]["name"], e["selector"]["class"], e["chosen"]["id"])
        for e in entries
        if e["call"] == "select_and_get_calibration"
    ]


def pin_of(frame: dict, selector_number: int) -> str:
    """The id :data:`MANIFEST` pins for ``frame`` with the n-th of :func:`selectors`."""
    index = FRAMES.index(frame) * len(selectors()) + selector_number
    return pins(MANIFEST)[index][2]


def replay_one(manifest: str | os.PathLike, cache: str, frame: dict, selector: Any) -> str:
    """Replay one selection with a store on the cache folder ``cache``; return the id it gives."""
    with CalibrationStore("hispec", cache, connect_remote=False, manifest=manifest) as replay:
        return replay.select_and_get_calibration(frame, selector)[1]["id"]


def main(path: str) -> None:
    """Record the run into the manifest ``path``, in a cache that is removed afterwards."""
    for name in ("KOA_CALIBRATION_ORIGIN", "KOA_CALIBRATIONS_ORIGIN"):
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory() as folder:
        with CalibrationStore(instrument_name="hispec", cache_dir=folder,
                              connect_remote=False) as store:  # fmt: skip
            register(store)
            with store.record_manifest(path):
                run(store)
                store.get_calibration(CALIBRATIONS[0]["id"])

"""Small calibration models for tests: real files, no mocks."""

from __future__ import annotations

import os
from pathlib import Path


class FileModel:
    """A calibration that writes ``data`` to its file; its record is a plain dict.

    ``version_in_name=True`` makes its file name depend on its version, as some
    pipelines' models do.
    """

    def __init__(self, record: dict, data: bytes = b"x" * 1024, version_in_name: bool = False):
        self.record = record
        self.data = data
        self.version_in_name = version_in_name
        self.saved_to: list[str] = []

    def to_record(self) -> dict:
        if self.version_in_name and self.record.get("cal_version"):
            stem = Path(self.record["filename"]).stem.split("_v")[0]
            self.record["filename"] = f"{stem}_v{self.record['cal_version']}.fits"
        return self.record

    def save(self, output_dir: str | None = None, output_path: str | None = None) -> str:
        path = output_path or os.path.join(output_dir or ".", self.to_record()["filename"])
        with open(path, "wb") as handle:
            handle.write(self.data)
        self.saved_to.append(path)
        return path


class FailingModel(FileModel):
    """A model whose save() raises after writing part of its file."""

    def save(self, output_dir=None, output_path=None):
        with open(output_path, "wb") as handle:
            handle.write(self.data[:10])
        raise OSError("disk full")


class NowhereModel(FileModel):
    """A model whose save() returns a path but writes nothing."""

    def save(self, output_dir=None, output_path=None):
        return output_path


def dark(i: int = 0, **extra) -> dict:
    """A dark record of night ``i`` (no id: the store assigns one)."""
    record = {
        "filename": f"dark_{i:05d}.fits",
        "cal_type": "dark",
        "datetime_obs": f"2024-01-{1 + i % 28:02d}T00:00:00.000",
        "spectrograph": "spec_a",
        "master_cal": 1,
    }
    record.update(extra)
    return record

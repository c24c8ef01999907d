"""A calibration data model that names its own file and carries a small header."""

from __future__ import annotations

import os


class HispecCalibration:
    """A master calibration: a header of ``KEY = value`` lines, then the data.

    ``save()`` honours only ``output_dir`` (as the reference passes it) and names
    the file from its metadata, version included.
    """

    def __init__(self, meta: dict, data: bytes = b"\0" * 2048):
        self.meta = meta
        self.data = data
        self.header: dict[str, str] = {}

    def to_record(self) -> dict:
        return self.meta

    def make_filename(self) -> str:
        day = self.meta["datetime_obs"][:10].replace("-", "")
        version = self.meta.get("cal_version", "000")
        return f"hispec_{self.meta['cal_type']}_{self.meta['spectrograph']}_{day}_v{version}.fits"

    def save(self, *args, output_path=None, output_dir=None, **kwargs) -> str:
        path = os.path.join(output_dir, self.make_filename())
        lines = "".join(f"{key} = {value}\n" for key, value in self.header.items())
        with open(path, "wb") as handle:
            handle.write(lines.encode() + b"END\n" + self.data)
        return path


def read_header(path: str) -> dict[str, str]:
    """The ``KEY = value`` lines at the top of a saved calibration."""
    header = {}
    with open(path, "rb") as handle:
        for line in handle:
            if line == b"END\n":
                break
            key, _, value = line.decode().partition(" = ")
            header[key] = value.strip()
    return header

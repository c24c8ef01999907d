"""A calibration model shaped like the reference implementation's test model.

``meta`` is the record itself (``to_record()`` returns it), and ``save()``
names the file from ``cal_type`` and ``datetime_obs`` only: every version of
a family is saved under one name.
"""

from __future__ import annotations

import os
import re
import uuid


class FamilyNamedModel:
    """A calibration whose file name is ``cal_<cal_type>_<digits of datetime_obs>.fits``."""

    def __init__(self, cal_type: str, datetime_obs: str, data: bytes = b"", **extra):
        self.meta = {
            "id": str(uuid.uuid4()),
            "cal_type": cal_type,
            "datetime_obs": datetime_obs,
            **extra,
        }
        self.meta["filename"] = self.file_name()
        self.data = data

    def file_name(self) -> str:
        stamp = re.sub(r"\D", "", self.meta["datetime_obs"])
        return f"cal_{self.meta['cal_type']}_{stamp}.fits"

    def save(self, output_dir: str | None = None, output_path: str | None = None) -> str:
        if output_path is None:
            os.makedirs(output_dir or ".", exist_ok=True)
            output_path = os.path.join(output_dir or ".", self.file_name())
        with open(output_path, "wb") as handle:
            handle.write(self.data)
        return output_path

    def to_record(self) -> dict:
        return self.meta


class PathKeepingModel(FamilyNamedModel):
    """The same model, keeping where ``save()`` wrote its file (``_filepath``)."""

    _filepath: str | None = None

    def save(self, output_dir: str | None = None, output_path: str | None = None) -> str:
        self._filepath = super().save(output_dir, output_path)
        return self._filepath

"""A data model written the stdatamodels way: ``meta`` is an object, and ``save()``
records where it wrote the file (``meta.filename`` and ``_filepath``, set by its
``on_save`` hook), as the models of pipelines built on stdatamodels do."""

from __future__ import annotations

import os


class Meta:
    """Metadata read and set as attributes (``model.meta.filename``)."""

    def __init__(self, **values):
        self.__dict__.update(values)


class HispecDarkModel:
    """A master dark. Its record is built once and kept, so the version the store
    gives it before ``save()`` names its file."""

    def __init__(self, data: bytes, **meta):
        self.meta = Meta(filename=None, **meta)
        self.data = data
        self.header: dict[str, str] = {}
        self._filepath: str | None = None
        self._record: dict | None = None

    def to_record(self) -> dict:
        if self._record is None:
            self._record = {k: v for k, v in vars(self.meta).items() if k != "filename"}
        return self._record

    def make_filename(self) -> str:
        version = self.to_record().get("cal_version", "000")
        day = self.meta.datetime_obs[:10].replace("-", "")
        return f"hispec_dark_{self.meta.spectrograph}_{day}_v{version}.fits"

    def on_save(self, path: str) -> None:
        self.meta.filename = os.path.basename(path)
        self._filepath = path

    def save(self, path=None, dir_path=None, output_dir=None, **kwargs) -> str:
        folder = dir_path or output_dir or ""
        path = os.path.join(folder, path or self.make_filename())
        self.on_save(path)
        lines = "".join(f"{key} = {value}\n" for key, value in self.header.items())
        with open(path, "wb") as handle:
            handle.write(lines.encode() + b"END\n" + self.data)
        return path

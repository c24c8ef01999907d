"""Finding a calibration in the local cache: by id, file name, version family or MD5.

A mixin of :class:`~koa_middleware.store.CalibrationStore`; the
``_calibration_record_in_cache_*`` helpers keep the names and answers of the
reference implementation, which pipelines call.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..datamodel_protocol import SupportsCalibrationModelIO
from ..errors import InvalidRecordError
from ..hashing import file_md5
from ..records import is_cal_id

logger = logging.getLogger(__name__)

__all__ = ["CacheLookup"]


class CacheLookup:
    """Lookups in the local database and cache folder (needs ``local_db`` and ``layout``)."""

    def _lookup_local(self, cal: Any) -> dict | None:
        """The local record of an id, path, file name, record or model (None if absent)."""
        if isinstance(cal, str | os.PathLike):
            text = os.fspath(cal)
            if is_cal_id(text):
                return self.local_db.query_id(text)
            return self.local_db.query_filename(os.path.basename(text))
        record = self.record_from(cal)
        if record.get("id") is not None:
            return self.local_db.query_id(record["id"])
        if record.get("filename"):
            return self.local_db.query_filename(record["filename"])
        return None

    def calibration_record_in_cache(
        self, cal: dict | str | SupportsCalibrationModelIO, mode: str = "id"
    ) -> dict | None:
        """The local record matching ``cal``, or None.

        Parameters
        ----------
        cal : dict | str | SupportsCalibrationModelIO
            An id, a file path, a record or a model.
        mode : {'id', 'version-family', 'md5'}
            Match by id (or file name for a path), by version family (the highest
            version of the family and origin), or by the file's MD5.

        Examples
        --------
        >>> store.calibration_record_in_cache(cal_id)["filename"]  # doctest: +SKIP
        'dark_001.fits'
        """
        if mode == "id":
            return self._lookup_local(cal)
        if mode == "md5":
            return self._calibration_record_in_cache_md5(cal)
        if mode == "version-family":
            record = self._lookup_local(cal) if isinstance(cal, str) else self.record_from(cal)
            if record is None:
                return None
            family = self.get_version_family_values(record)
            origin = (record.get("origin") or self.origin).upper()
            newest = self.local_db.rows_matching(
                {**family, "origin": origin}, "cal_version DESC", limit=1
            )
            return newest[0] if newest else None
        raise ValueError(f"Invalid mode {mode!r}: use 'id', 'version-family' or 'md5'.")

    def _calibration_record_in_cache_id(
        self, calibration: dict | str | SupportsCalibrationModelIO
    ) -> dict | None:
        """The local record with the id of ``calibration`` (an id, record or model), or None.

        Raises
        ------
        InvalidRecordError
            (a ``ValueError``) for a string that is not a calibration id, or an
            input that is none of the above.
        """
        if isinstance(calibration, str):
            if not is_cal_id(calibration):
                raise InvalidRecordError(
                    f"{calibration!r} is not a calibration id; look up a file with "
                    "_calibration_record_in_cache_filename()."
                )
            return self.local_db.query_id(calibration)
        cal_id = self.record_from(calibration).get("id")
        return self.local_db.query_id(cal_id) if cal_id is not None else None

    def _calibration_record_in_cache_filename(
        self, cal: dict | SupportsCalibrationModelIO
    ) -> dict | None:
        """The local record with the file name of ``cal`` (a record or model), or None."""
        filename = self.record_from(cal).get("filename")
        return self.local_db.query_filename(filename) if filename else None

    def _calibration_record_in_cache_version_family(
        self, cal: dict | SupportsCalibrationModelIO, include_version: bool = False
    ) -> list[dict] | dict | None:
        """Every local record of ``cal``'s version family (any origin), or None.

        With ``include_version=True``, the one record of the family with ``cal``'s
        ``cal_version``, or None. A family value that ``cal`` lacks matches only
        records that lack it too.
        """
        record = self.record_from(cal)
        filters = dict(self.get_version_family_values(record))
        if include_version:
            filters["cal_version"] = record.get("cal_version")
        rows = self.local_db.rows_matching(filters)
        if not rows:
            return None
        return rows[0] if include_version else rows

    def _calibration_record_in_cache_md5(self, cal: Any) -> dict | None:
        """The first local record whose ``file_md5`` is that of ``cal``, or None.

        ``cal`` is a file path (its MD5 is computed), an id or file name of a
        cached calibration, a record or a model carrying ``file_md5``.

        Raises
        ------
        InvalidRecordError
            If there is no MD5 to match.
        """
        if isinstance(cal, str | os.PathLike) and os.path.isfile(cal):
            md5 = file_md5(cal)
        else:
            source = self._lookup_local(cal) if isinstance(cal, str) else None
            md5 = (source or self.record_from(cal)).get("file_md5")
        if not md5:
            raise InvalidRecordError(
                "Cannot match by MD5: the input has no file_md5 and is not a file path."
            )
        return self.local_db.query(fetch="first", file_md5=str(md5).lower())

    def calibration_file_in_cache(
        self, cal: dict | str | SupportsCalibrationModelIO, filename: str | None = None
    ) -> str | None:
        """The cached file's absolute path if the file is present, else None."""
        if filename is None:
            record = self._lookup_local(cal)
            if record is None and not isinstance(cal, str):
                record = self.record_from(cal)
            if record is None:
                if isinstance(cal, str) and not is_cal_id(cal):
                    filename = os.path.basename(cal)
                else:
                    return None
            else:
                filename = record.get("filename")
        if not filename:
            return None
        path = self.layout.path_for(filename)
        return str(path) if path.is_file() else None

    def get_missing_local_files(self) -> list[dict]:
        """Records in the local database whose file is missing from the cache."""
        present = set(os.listdir(self.layout.calibrations_dir))
        return [row for row in self.local_db.rows if row["filename"] not in present]

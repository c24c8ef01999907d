"""Finding a calibration in the local cache: by id, file name, version family or MD5.

The store's ``calibration_record_in_cache`` and ``_calibration_record_in_cache_*``
methods (names and answers of the reference implementation, which pipelines
call) delegate to a :class:`CacheLookup`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from ..datamodel_protocol import SupportsCalibrationModelIO, record_of
from ..errors import InvalidRecordError
from ..hashing import file_md5
from ..records import is_cal_id
from .local_cache import CalibrationRef, LocalCache

logger = logging.getLogger(__name__)

__all__ = ["CacheLookup"]


class CacheLookup:
    """Lookups in one local cache by id, file name, version family or MD5.

    Parameters
    ----------
    cache : LocalCache
        The cache to look in.
    family_of : callable
        ``record -> dict``: the values of a record's version-family columns
        (the store's overridable ``get_version_family_values``).
    origin : str
        The store's origin, for records that carry none.

    Examples
    --------
    >>> store.lookup.matching(cal_id)["filename"]  # doctest: +SKIP
    'dark_001.fits'
    """

    def __init__(self, cache: LocalCache, family_of: Callable[[Any], dict], origin: str):
        self.cache = cache
        self.family_of = family_of
        self.origin = origin

    def __repr__(self) -> str:
        return f"CacheLookup({self.cache!r})"

    @property
    def local_db(self) -> Any:
        """The cache's database."""
        return self.cache.db

    def find(self, cal: Any) -> dict | None:
        """The local record of an id, path, file name, record or model (None if absent)."""
        return self.cache.find(CalibrationRef.parse(cal))

    def matching(self, cal: Any, mode: str = "id") -> dict | None:
        """The local record matching ``cal`` by ``mode`` (``'id'``, ``'version-family'``,
        ``'md5'``), or None; see :meth:`CalibrationStore.calibration_record_in_cache
        <koa_middleware.store.CalibrationStore.calibration_record_in_cache>`.
        """
        if mode == "id":
            return self.find(cal)
        if mode == "md5":
            return self.by_md5(cal)
        if mode == "version-family":
            record = self.find(cal) if isinstance(cal, str) else record_of(cal)
            if record is None:
                return None
            family = self.family_of(record)
            origin = (record.get("origin") or self.origin).upper()
            newest = self.local_db.rows_matching(
                {**family, "origin": origin}, "cal_version DESC", limit=1
            )
            return newest[0] if newest else None
        raise ValueError(f"Invalid mode {mode!r}: use 'id', 'version-family' or 'md5'.")

    def by_id(self, calibration: dict | str | SupportsCalibrationModelIO) -> dict | None:
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
                    f"{calibration!r} is not a calibration id; look up a file with by_filename()."
                )
            return self.local_db.query_id(calibration)
        cal_id = record_of(calibration).get("id")
        return self.local_db.query_id(cal_id) if cal_id is not None else None

    def by_filename(self, cal: dict | SupportsCalibrationModelIO) -> dict | None:
        """The local record with the file name of ``cal`` (a record or model), or None."""
        filename = record_of(cal).get("filename")
        return self.local_db.query_filename(filename) if filename else None

    def by_version_family(
        self, cal: dict | SupportsCalibrationModelIO, include_version: bool = False
    ) -> list[dict] | dict | None:
        """Every local record of ``cal``'s version family (any origin), or None.

        With ``include_version=True``, the one record of the family with ``cal``'s
        ``cal_version``, or None. A family value that ``cal`` lacks matches only
        records that lack it too.
        """
        record = record_of(cal)
        filters = dict(self.family_of(record))
        if include_version:
            filters["cal_version"] = record.get("cal_version")
        rows = self.local_db.rows_matching(filters)
        if not rows:
            return None
        return rows[0] if include_version else rows

    def by_md5(self, cal: Any) -> dict | None:
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
            source = self.find(cal) if isinstance(cal, str) else None
            md5 = (source or record_of(cal)).get("file_md5")
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
            record = self.find(cal)
            if record is None and not isinstance(cal, str):
                record = record_of(cal)
            if record is None:
                if isinstance(cal, str) and not is_cal_id(cal):
                    filename = os.path.basename(cal)
                else:
                    return None
            else:
                filename = record.get("filename")
        if not filename:
            return None
        path = self.cache.layout.path_for(filename)
        return str(path) if path.is_file() else None

    def get_missing_local_files(self) -> list[dict]:
        """Records whose file is in neither the cache nor one of its read-only caches."""
        return self.cache.missing_files()

"""Registering a calibration model: version, file and record, all or nothing.

The store's steps (:mod:`koa_middleware.cache.registration_steps`, each one
overridable) run inside one SQLite write transaction, in this order:

1. take the write lock (``BEGIN IMMEDIATE``) and return an already registered
   calibration of the same id, or family and origin, if there is one;
2. ``_prepare_cal_record``: allocate the version (no other process can take it
   while the lock is held);
3. ``save_calibration_file``: the model writes its file into a private folder
   under ``tmp/<instrument>/`` (the store's ``data_dir`` points there);
4. ``_finalize_cal_record``: file name, MD5 and size; the store checks them
   against the file;
5. insert the record (not yet committed), leave a pending marker, rename the
   file into ``calibrations/<instrument>``;
6. commit, then drop the marker and the private folder.

A process killed before step 6 leaves no committed record; a file it renamed
into place is removed by the next store that starts (the marker says which),
and its private folder by the cleaning of ``tmp/``.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    CacheFullError,
    CalibrationNotFoundError,
    CalibrationSaveError,
    ChecksumMismatchError,
    InvalidRecordError,
)
from ..hashing import file_digest
from ..records import LOCAL_REQUIRED_FIELDS, new_cal_id, utc_now, validate_record
from .layout import CacheLayout, cache_full_error, is_disk_full, place_file

if TYPE_CHECKING:
    from ..store import CalibrationStore

logger = logging.getLogger(__name__)

__all__ = ["complete_cached_file_record", "register_model"]


def register_model(
    store: CalibrationStore, cal: Any, origin: str | None, new_version: bool
) -> tuple[str, dict]:
    """Register ``cal`` in ``store``; see :meth:`CalibrationStore.register_calibration`."""
    record = store.record_from(cal)
    if record.get("id") is None:
        record["id"] = new_cal_id()
    cal_id = record["id"]
    origin = store._registration_origin(origin, record)
    family = store.get_version_family_values(record)
    store._ensure_family_index(family)
    db = store.local_db
    with store.layout.pending_write(cal_id) as pending, store._staged() as folder:
        placed: Path | None = None
        try:
            with db.write_transaction():
                existing = _registered_already(store, cal_id, family, origin, new_version)
                if existing is not None:
                    return str(store.layout.path_for(existing["filename"])), existing
                cal_record = store._prepare_cal_record(cal, origin=origin)
                if cal_record.get("id") is None:
                    cal_record["id"] = cal_id
                # A bad record is refused before the model writes anything.
                validate_record(cal_record, _REQUIRED_BEFORE_SAVE)
                try:
                    saved = store.save_calibration_file(cal, cal_record=cal_record)
                except CalibrationSaveError as exc:
                    full = _cache_full(exc, folder, cal)
                    if full is None:
                        raise
                    raise full from exc.__cause__
                staged = store._adopt_saved_file(saved, folder)
                cal_record = _finalize(store, cal, cal_record, str(staged))
                stored = _checked_record(store, cal_record, staged, origin)
                destination = _free_destination(store.layout, stored["filename"])
                db.add(stored)
                pending.note(stored["filename"])
                place_file(staged, destination)
                placed = destination
                db.set_file_stat(cal_id, stored["filename"], stored["file_md5"], os.lstat(placed))
            # committed: the record and its file are both in place
        except BaseException:
            if placed is not None:
                placed.unlink(missing_ok=True)
            raise
    logger.info("Registered %s as %s version %s", stored["filename"], cal_id, stored["cal_version"])
    return str(destination), stored


def _cache_full(exc: CalibrationSaveError, folder: Path, cal: Any) -> CacheFullError | None:
    """The :class:`CacheFullError` to raise when ``save()`` failed for want of room."""
    cause = exc.__cause__
    if isinstance(cause, OSError) and is_disk_full(cause):
        what = f"saving the {type(cal).__name__} calibration"
        return cache_full_error(cause, folder.parent, None, what)
    return None


def _registered_already(
    store: CalibrationStore, cal_id: str, family: dict, origin: str, new_version: bool
) -> dict | None:
    """The registered calibration that makes this registration a no-op, if any."""
    db = store.local_db
    existing = db.query_id(cal_id)
    if existing is None and not new_version:
        newest = db.rows_matching({**family, "origin": origin}, "cal_version DESC", limit=1)
        existing = newest[0] if newest else None
    if existing is not None:
        logger.info(
            "Not registering calibration %s: %s (version %s) is already cached",
            cal_id,
            existing["filename"],
            existing.get("cal_version"),
        )
    return existing


#: The file name may come from the saved file (the model names it).
_REQUIRED_BEFORE_SAVE = tuple(f for f in LOCAL_REQUIRED_FIELDS if f != "filename")
_TAKES_MODEL: dict[Any, bool] = {}


def _finalize(store: CalibrationStore, cal: Any, cal_record: dict, path: str) -> dict:
    """Call ``_finalize_cal_record`` as declared: ``(cal, record, path)`` or ``(record, path)``."""
    method = store._finalize_cal_record
    function = getattr(method, "__func__", method)
    if function not in _TAKES_MODEL:
        params = inspect.signature(method).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
        _TAKES_MODEL[function] = variadic or len(positional) >= 3
    if _TAKES_MODEL[function]:
        result = method(cal, cal_record, path)
    else:
        result = method(cal_record, path)
    return cal_record if result is None else result


def _checked_record(store: CalibrationStore, cal_record: dict, staged: Path, origin: str) -> dict:
    """The record to store: what the steps left out filled in, checked against the file.

    Raises
    ------
    ChecksumMismatchError
        If the record's ``file_md5`` or ``file_size`` is not the saved file's.
    InvalidRecordError
        If the record breaks a rule.
    """
    if cal_record.get("origin") is None:
        cal_record["origin"] = origin
    if cal_record.get("cal_version") is None:
        cal_record["cal_version"] = store.generate_calibration_version(cal_record, origin=origin)
    if cal_record.get("last_updated") is None:
        cal_record["last_updated"] = utc_now()
    if not cal_record.get("filename"):
        cal_record["filename"] = staged.name
    md5, size = store._file_digest(staged)
    claimed = cal_record.get("file_md5")
    if claimed is not None and str(claimed).lower() != md5:
        raise ChecksumMismatchError(
            f"The record of {cal_record['filename']} says file_md5 {claimed}, but the saved "
            f"file's MD5 is {md5}; _finalize_cal_record must describe the file it was given."
        )
    if cal_record.get("file_size") not in (None, size):
        raise ChecksumMismatchError(
            f"The record of {cal_record['filename']} says file_size {cal_record['file_size']}, "
            f"but the saved file has {size} bytes."
        )
    cal_record.update(file_md5=md5, file_size=size)
    return validate_record(cal_record, LOCAL_REQUIRED_FIELDS)


def _free_destination(layout: CacheLayout, filename: str) -> Path:
    """The cache path for ``filename``, refusing to overwrite a file already there."""
    destination = layout.path_for(filename)
    # A link planted under the name is replaced by place_file, never followed.
    if destination.exists() and not destination.is_symlink():
        raise InvalidRecordError(
            f"{destination} is already in the cache; give the calibration another file "
            "name, or record the existing file with sync_records_from_cached_files()."
        )
    return destination


def complete_cached_file_record(layout: CacheLayout, record: dict, origin: str) -> dict:
    """Complete the record of a file already in the cache (checksums, id, origin, time).

    Raises
    ------
    InvalidRecordError
        If the record has no file name.
    CalibrationNotFoundError
        If the file is not in the cache.
    ChecksumMismatchError
        If the file's MD5 differs from the record's ``file_md5``.
    """
    if not record.get("filename"):
        raise InvalidRecordError("The record has no filename; add the cached file's name.")
    path = layout.path_for(record["filename"])
    if not path.is_file():
        raise CalibrationNotFoundError(
            f"{record['filename']} is not in {layout.calibrations_dir}; copy it there first "
            "or use register_calibration()."
        )
    md5, size = file_digest(path)
    if record.get("file_md5") and str(record["file_md5"]).lower() != md5:
        raise ChecksumMismatchError(f"{path.name} has MD5 {md5}, its record {record['file_md5']}.")
    record["id"] = record.get("id") or new_cal_id()
    record["origin"] = str(record.get("origin") or origin).upper()
    record.update(file_md5=md5, file_size=size)
    if not record.get("last_updated"):
        record["last_updated"] = utc_now()
    return record

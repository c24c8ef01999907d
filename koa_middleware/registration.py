"""Registering a calibration model: version, file and record, all or nothing.

The order of steps is what makes registration crash-safe:

1. take SQLite's write lock (``BEGIN IMMEDIATE``) and allocate the version;
2. let the model save its file under a temporary name in ``tmp/<instrument>``;
3. checksum it and insert the record (not yet committed);
4. leave a pending marker, rename the file into ``calibrations/<instrument>``;
5. commit, then drop the marker.

A process killed before step 5 leaves no committed record; a file it renamed
into place is removed by the next store that starts (the marker says which).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import CacheLayout, place_file
from .errors import (
    CalibrationNotFoundError,
    CalibrationSaveError,
    ChecksumMismatchError,
    InvalidRecordError,
)
from .hashing import file_digest
from .records import LOCAL_REQUIRED_FIELDS, new_cal_id, utc_now, validate_record

if TYPE_CHECKING:
    from .store import CalibrationStore

logger = logging.getLogger(__name__)

__all__ = ["complete_cached_file_record", "register_model", "save_model_to_cache"]


def register_model(
    store: CalibrationStore, cal: Any, origin: str | None, new_version: bool
) -> tuple[str, dict]:
    """Register ``cal`` in ``store``; see :meth:`CalibrationStore.register_calibration`."""
    record = store.record_from(cal)
    if record.get("id") is None:
        record["id"] = new_cal_id()
    origin = str(origin or record.get("origin") or store.origin).upper()
    family = store.get_version_family_values(record)
    store._family_index(family)
    db = store.local_db
    with store.layout.pending_write(record["id"]) as pending:
        placed: Path | None = None
        temp: Path | None = None
        try:
            with db.write_transaction():
                existing = db.query_id(record["id"])
                if existing is None and not new_version:
                    existing = db.query(
                        origin=origin, order_by="cal_version DESC", fetch="first", **family
                    )
                if existing is not None:
                    logger.info(
                        "Not registering %s: calibration %s (version %s) is already cached",
                        record.get("filename"),
                        existing["id"],
                        existing.get("cal_version"),
                    )
                    return str(store.layout.path_for(existing["filename"])), existing
                record["origin"] = origin
                record["cal_version"] = store._next_version(family, origin)
                temp = _save_to_temp(store.layout, cal, record.get("filename") or "")
                stored = _complete_record(cal, record, temp)
                destination = _free_destination(store.layout, stored["filename"])
                db.add(stored)
                pending.note(stored["filename"])
                place_file(temp, destination)
                placed = destination
            # committed: the record and its file are both in place
        except BaseException:
            if placed is not None:
                placed.unlink(missing_ok=True)
            raise
        finally:
            if temp is not None:
                temp.unlink(missing_ok=True)
    return str(destination), stored


def _free_destination(layout: CacheLayout, filename: str) -> Path:
    """The cache path for ``filename``, refusing to overwrite a file already there."""
    destination = layout.path_for(filename)
    if destination.exists():
        raise InvalidRecordError(
            f"{destination} is already in the cache; give the calibration another file "
            "name, or record the existing file with sync_records_from_cached_files()."
        )
    return destination


def _complete_record(cal: Any, record: dict, temp: Path) -> dict:
    """The record to store: the model's fields, what the store assigned, and the checksums."""
    assigned = {k: record[k] for k in ("id", "origin", "cal_version")}
    refreshed = cal.to_record() if hasattr(cal, "to_record") else record
    merged = {**record, **(refreshed or {}), **assigned}
    md5, size = file_digest(temp)
    merged.update(file_md5=md5, file_size=size, last_updated=utc_now())
    record.update(file_md5=md5, file_size=size, last_updated=merged["last_updated"])
    return validate_record(merged, LOCAL_REQUIRED_FIELDS)


def _save_to_temp(layout: CacheLayout, cal: Any, hint: str) -> Path:
    """Let the model write its file under a fresh temporary name; return that path.

    Raises
    ------
    CalibrationSaveError
        If ``save()`` raises, or no file exists where it says it wrote.
    """
    temp = layout.temp_path(hint)
    try:
        written = cal.save(output_path=str(temp))
    except Exception as exc:
        temp.unlink(missing_ok=True)
        raise CalibrationSaveError(
            f"{type(cal).__name__}.save() failed: {exc}. Nothing was registered."
        ) from exc
    if temp.is_file():
        return temp
    if written and Path(written).is_file():
        # The model ignored output_path; copy, so its own file is left alone.
        shutil.copyfile(written, temp)
        return temp
    raise CalibrationSaveError(
        f"{type(cal).__name__}.save(output_path=...) wrote no file (it returned "
        f"{written!r}); save() must write the file and return its path. Nothing was registered."
    )


def save_model_to_cache(layout: CacheLayout, cal: Any, record: dict) -> Path:
    """Save ``cal``'s file into the cache under ``record['filename']``, atomically.

    Raises
    ------
    InvalidRecordError
        If the record has no valid file name.
    CalibrationSaveError
        If ``save()`` fails or writes nothing.
    """
    if not record.get("filename"):
        raise InvalidRecordError("The record has no filename; the cache needs one to save to.")
    destination = layout.path_for(record["filename"])
    temp = _save_to_temp(layout, cal, record["filename"])
    try:
        place_file(temp, destination)
    finally:
        temp.unlink(missing_ok=True)
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
    record.update(file_md5=md5, file_size=size, last_updated=utc_now())
    return record

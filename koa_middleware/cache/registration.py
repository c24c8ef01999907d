"""Registering a calibration model: version, file and record, all or nothing.

The store's steps (:mod:`koa_middleware.cache.registration_steps`, each one
overridable) run inside one SQLite write transaction, in this order:

1. take the write lock (``BEGIN IMMEDIATE``) and return an already registered
   calibration of the same id, or family and origin, if there is one;
2. ``_prepare_cal_record``: allocate the version (no other process can take it
   while the lock is held);
3. ``save_calibration_file``: the model writes its file into a private folder
   under ``tmp/<instrument>/`` (the store's ``data_dir`` points there; the
   folder is the store's :class:`~koa_middleware.cache.staging.Staging`,
   ``store.staging``);
4. ``_finalize_cal_record``: file name, MD5 and size; the store checks them
   against the file;
5. insert the record (not yet committed), leave a pending marker, rename the
   file into ``calibrations/<instrument>``; when the model named it as the file
   of an earlier version of the family (a ``save()`` that names files from
   ``cal_type`` and ``datetime_obs`` only), the new version's file is named by
   :func:`versioned_filename` (``dark.fits`` -> ``dark_v002.fits``), with a
   WARNING, and the earlier file is left as it is;
6. commit, then drop the marker and the private folder;
7. tell the model where its file went: its ``_filepath`` and ``meta.filename``
   now name the registered file (see
   :func:`~koa_middleware.cache.registration_steps.point_model_at`).

A process killed before step 6 leaves no committed record; a file it renamed
into place is removed by the next store that starts (the marker says which),
and its private folder by the cleaning of ``tmp/``.

Why a private folder rather than the final path: the model names its file
inside ``save()``, so its name is known only afterwards. Written straight into
``calibrations/``, a file could replace the file of a registered calibration
before any check, and a process killed during ``save()`` would leave a file
no marker names. Step 7 gives the model the registered path instead.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

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
from .registration_steps import ModelPath, point_model_at, save_model

if TYPE_CHECKING:
    from ..database.local_database import LocalCalibrationDB
    from .staging import Staging

logger = logging.getLogger(__name__)

__all__ = [
    "RegistrationHost",
    "complete_cached_file_record",
    "register_model",
    "versioned_filename",
    "warn_if_not_a_calibration",
]


class RegistrationHost(Protocol):
    """The steps of registration that a store provides, each one overridable.

    :class:`~koa_middleware.store.CalibrationStore` is one (through
    :class:`~koa_middleware.cache.registration_steps.RegistrationSteps`). The
    private folder and the MD5s are its ``staging`` collaborator's.
    """

    data_dir: str
    staging: Staging

    def _prepare_cal_record(self, cal: Any, origin: str | None = None) -> dict: ...

    def save_calibration_file(self, cal: Any, cal_record: dict | None = None) -> str: ...

    def _finalize_cal_record(self, *args: Any) -> dict | None: ...

    def generate_calibration_version(self, cal: Any, origin: str | None = None) -> str: ...

    def get_version_family_values(self, cal: Any) -> dict: ...


def register_model(
    steps: RegistrationHost,
    cal: Any,
    *,
    db: LocalCalibrationDB,
    layout: CacheLayout,
    cal_id: str,
    family: dict,
    origin: str,
    new_version: bool,
    staging: Staging | None = None,
) -> tuple[str, dict]:
    """Register ``cal`` under ``cal_id``; see :meth:`CalibrationStore.register_calibration`.

    Parameters
    ----------
    steps : RegistrationHost
        The store whose steps prepare, save and finalize the record.
    cal : Any
        The calibration model.
    db, layout : LocalCalibrationDB, CacheLayout
        Where the record and the file go.
    cal_id, family, origin : str, dict, str
        The calibration's id, its version family's values and its origin.
    new_version : bool
        Register a new version even when the family already holds one.
    staging : Staging | None
        The private folders the model saves into; None: ``steps.staging``.

    Returns
    -------
    tuple[str, dict]
        The cached file's path (which exists) and the stored record. The model
        is pointed at that path when its bytes are the registered file's (see
        :func:`~koa_middleware.cache.registration_steps.point_model_at`);
        otherwise its path is left as it was before.
    """
    staging = steps.staging if staging is None else staging
    remembered = ModelPath.remember(cal)
    try:
        path, record, kept = _register(
            steps, cal, db, layout, staging, cal_id, family, origin, new_version
        )
    except BaseException:
        remembered.restore()  # its file, if it wrote one, is gone with the private folder
        raise
    if kept:
        point_model_at(cal, path)
    else:
        remembered.restore()
    return path, record


def _register(
    steps: RegistrationHost,
    cal: Any,
    db: LocalCalibrationDB,
    layout: CacheLayout,
    staging: Staging,
    cal_id: str,
    family: dict,
    origin: str,
    new_version: bool,
) -> tuple[str, dict, bool]:
    """Register ``cal``: its path, its record and whether the model's bytes are that file."""
    with layout.pending_write(cal_id) as pending, staging.staged() as folder:
        placed: Path | None = None
        try:
            with db.write_transaction():
                existing = _registered_already(db, cal_id, family, origin, new_version)
                if existing is not None:
                    return _answer_existing(staging, cal, existing, db, layout, folder)
                cal_record = steps._prepare_cal_record(cal, origin=origin)
                if cal_record.get("id") is None:
                    cal_record["id"] = cal_id
                # A bad record is refused before the model writes anything.
                validate_record(cal_record, _REQUIRED_BEFORE_SAVE)
                staged = _save(steps, staging, cal, cal_record, folder)
                cal_record = _finalize(steps, cal, cal_record, str(staged))
                stored = _checked_record(steps, staging, cal_record, staged, origin)
                destination = _destination(steps, db, layout, stored)
                db.add_validated([stored])
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
    return str(destination), stored, True


#: Frame types that are science, not calibrations.
_NOT_CALIBRATIONS = frozenset({"object", "science", "sci"})


def warn_if_not_a_calibration(record: dict, known_types: tuple[str, ...] = ()) -> None:
    """Warn when a record's ``cal_type`` names a science frame, or a type the profile lacks.

    Parameters
    ----------
    record : dict
        The record about to be registered.
    known_types : tuple of str
        The calibration types of the instrument's profile (empty: any type).

    Examples
    --------
    >>> warn_if_not_a_calibration({"filename": "f.fits", "cal_type": "dark"}, ("dark",))
    """
    cal_type = str(record.get("cal_type") or "").lower()
    if cal_type in _NOT_CALIBRATIONS:
        logger.warning(
            "%s has type %r, a science frame rather than a calibration; registering it "
            "anyway. Check IMAGETYP in its header, or pass cal_type (koa-cal register "
            "--cal-type).",
            record.get("filename"),
            cal_type,
        )
    elif known_types and cal_type and cal_type not in known_types:
        logger.warning(
            "%s has calibration type %r, which the instrument profile does not know (%s); "
            "registering it anyway.",
            record.get("filename"),
            cal_type,
            ", ".join(known_types),
        )


def _save(
    steps: RegistrationHost, staging: Staging, cal: Any, cal_record: dict, folder: Path
) -> Path:
    """Let the model write its file (the ``save_calibration_file`` step) into ``folder``."""
    try:
        saved = steps.save_calibration_file(cal, cal_record=cal_record)
    except CalibrationSaveError as exc:
        full = _cache_full(exc, folder, cal)
        if full is None:
            raise
        raise full from exc.__cause__
    return staging.adopt(saved, folder)


def _answer_existing(
    staging: Staging,
    cal: Any,
    existing: dict,
    db: LocalCalibrationDB,
    layout: CacheLayout,
    folder: Path,
) -> tuple[str, dict, bool]:
    """Answer with the calibration already registered, its file in place.

    The model's bytes decide: the same MD5 means the same calibration (its file
    is put back if the cache lost it); other bytes are not registered, with a
    warning, and the existing calibration is the answer, as the reference has it.
    The third value says whether the model's bytes are the answer's file (so
    the model may be pointed at it).

    Raises
    ------
    CalibrationNotFoundError
        If the existing calibration's file is gone and the model's bytes differ,
        so no existing path can be returned.
    """
    path = layout.path_for(existing["filename"])
    have_file = path.is_file()
    if have_file and not _needs_comparison(existing, cal):
        return str(path), existing, False  # not saved: the model is left as it is
    staged = staging.adopt(save_model(cal, str(folder)), folder)
    md5, _size = staging.digest(staged)
    same = md5 == str(existing.get("file_md5") or "").lower()
    yours = _describe(cal, staged)
    if same and not have_file:
        place_file(staged, path)
        db.set_file_stat(existing["id"], existing["filename"], md5, os.lstat(path))
        logger.info("Put back %s, the missing file of calibration %s", path.name, existing["id"])
    elif not same and have_file:
        logger.warning(
            "Not registered: %s differs from %s (version %s of the same family, id %s), "
            "which is returned instead. Register it as a new version with new_version=True "
            "(koa-cal register --new-version).",
            yours,
            path,
            existing.get("cal_version"),
            existing["id"],
        )
    elif not same:
        raise CalibrationNotFoundError(
            f"{existing['filename']} (version {existing.get('cal_version')}, id "
            f"{existing['id']}) holds this version family, but its file is missing from "
            f"{layout.calibrations_dir}, and {yours} has other bytes. Restore the file "
            "(koa-cal verify --repair), or register yours as a new version with "
            "new_version=True (koa-cal register --new-version)."
        )
    return str(path), existing, same


def _needs_comparison(existing: dict, cal: Any) -> bool:
    """Whether the model's bytes must be compared with the existing calibration's.

    The same id is the same calibration registered again; another id in the
    family may hold other bytes.
    """
    record = _model_record(cal)
    return record is None or record.get("id") != existing["id"]


def _model_record(cal: Any) -> dict | None:
    try:
        record = cal.to_record()
    except Exception:  # a model that cannot describe itself is compared by its bytes
        return None
    return record if isinstance(record, dict) else None


def _describe(cal: Any, staged: Path) -> str:
    """The user's file, as a warning names it."""
    source = getattr(cal, "path", None) or getattr(cal, "filename", None)
    return str(source) if source else f"the {type(cal).__name__} calibration ({staged.name})"


def _cache_full(exc: CalibrationSaveError, folder: Path, cal: Any) -> CacheFullError | None:
    """The :class:`CacheFullError` to raise when ``save()`` failed for want of room."""
    cause = exc.__cause__
    if isinstance(cause, OSError) and is_disk_full(cause):
        what = f"saving the {type(cal).__name__} calibration"
        return cache_full_error(cause, folder.parent, None, what)
    return None


def _registered_already(
    db: LocalCalibrationDB, cal_id: str, family: dict, origin: str, new_version: bool
) -> dict | None:
    """The registered calibration that makes this registration a no-op, if any."""
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


def _finalize(steps: RegistrationHost, cal: Any, cal_record: dict, path: str) -> dict:
    """Call ``_finalize_cal_record`` as declared: ``(cal, record, path)`` or ``(record, path)``.

    The earlier form is one with fewer than three positional parameters, or
    whose first is named ``cal_record`` (``(cal_record, local_filepath, extra=None)``).
    """
    method = steps._finalize_cal_record
    function = getattr(method, "__func__", method)
    if function not in _TAKES_MODEL:
        params = inspect.signature(method).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
        earlier = len(positional) < 3 or positional[0].name == "cal_record"
        _TAKES_MODEL[function] = variadic or not earlier
    if _TAKES_MODEL[function]:
        result = method(cal, cal_record, path)
    else:
        result = method(cal_record, path)
    return cal_record if result is None else result


def _checked_record(
    steps: RegistrationHost, staging: Staging, cal_record: dict, staged: Path, origin: str
) -> dict:
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
        cal_record["cal_version"] = steps.generate_calibration_version(cal_record, origin=origin)
    if cal_record.get("last_updated") is None:
        cal_record["last_updated"] = utc_now()
    if not cal_record.get("filename"):
        cal_record["filename"] = staged.name
    md5, size = staging.digest(staged)
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


def versioned_filename(filename: str, cal_version: str) -> str:
    """The file name of version ``cal_version`` when the model's name is an earlier version's.

    ``_v<version>`` goes before the extension; a compression suffix (``.gz``,
    ``.fz``, ...) keeps the extension before it. The rule is stable: the same
    name and version always give the same result.

    Examples
    --------
    >>> versioned_filename("cal_dark_20260301.fits", "002")
    'cal_dark_20260301_v002.fits'
    >>> versioned_filename("HB.20240924.45296.78.fits.gz", "003")
    'HB.20240924.45296.78_v003.fits.gz'
    >>> versioned_filename("dark", "002")
    'dark_v002'
    """
    stem, extension = _split_extension(filename)
    return f"{stem}_v{cal_version}{extension}"


#: Suffixes of compressed files: the extension is then the two last suffixes.
_COMPRESSION_SUFFIXES = frozenset({".gz", ".fz", ".bz2", ".xz", ".zst", ".z", ".zip"})


def _split_extension(filename: str) -> tuple[str, str]:
    """``'a.fits.gz'`` -> ``('a', '.fits.gz')``; ``'a.b.fits'`` -> ``('a.b', '.fits')``."""
    stem, dot, last = filename.rpartition(".")
    if not dot or not stem:
        return filename, ""
    extension = f".{last}"
    if extension.lower() in _COMPRESSION_SUFFIXES:
        inner, dot, before = stem.rpartition(".")
        if dot and inner:
            return inner, f".{before}{extension}"
    return stem, extension


def _destination(
    steps: RegistrationHost,
    db: LocalCalibrationDB,
    layout: CacheLayout,
    stored: dict,
) -> Path:
    """Where the new calibration's file goes; ``stored["filename"]`` is set to its name.

    A model that names its file from family values alone gives every version of
    the family one name. A new version then takes :func:`versioned_filename`
    (with a WARNING), so that the file of an earlier version is never
    overwritten and every record keeps describing its own bytes.

    Raises
    ------
    InvalidRecordError
        If the name belongs to a calibration of another family, or a file no
        record owns is in its place.
    """
    owner = db.query_filename(stored["filename"])
    family_of = steps.get_version_family_values
    if owner is not None and family_of(owner) == family_of(stored):
        name = versioned_filename(stored["filename"], stored["cal_version"])
        logger.warning(
            "%s is the file of version %s of the same version family (id %s); version %s "
            "is registered as %s, and the earlier file is left as it is. Have save() put "
            "the version into the file name to choose the names yourself.",
            stored["filename"],
            owner.get("cal_version"),
            owner["id"],
            stored["cal_version"],
            name,
        )
        stored["filename"] = name
        owner = db.query_filename(name)
    if owner is not None:
        error = InvalidRecordError(
            f"Another calibration, {owner['id']} (cal_type {owner.get('cal_type')}, version "
            f"{owner.get('cal_version')}, of another version family), already uses the file "
            f"name {stored['filename']} in this cache; give this calibration another file name "
            "(its record's 'filename')."
        )
        error.filename_taken = stored["filename"]  # type: ignore[attr-defined]
        error.taken_by = owner  # type: ignore[attr-defined]
        raise error
    return _free_destination(layout, db, stored["filename"])


def _free_destination(layout: CacheLayout, db: LocalCalibrationDB, filename: str) -> Path:
    """The cache path for ``filename``, refusing to overwrite a file already there.

    Raises
    ------
    InvalidRecordError
        If a file of that name is in the cache. The error's ``filename_taken``
        is the name, and its ``taken_by`` the record of the calibration that
        uses it (None when the file has no record), so that a caller can say
        how to register this calibration under another name.
    """
    destination = layout.path_for(filename)
    # A link planted under the name is replaced by place_file, never followed.
    if destination.exists() and not destination.is_symlink():
        owner = db.query_filename(filename)
        if owner is not None:
            message = (
                f"Another calibration, {owner['id']} (cal_type {owner.get('cal_type')}), "
                f"already uses the file name {filename} in this cache ({destination}); give "
                "this calibration another file name (its record's 'filename')."
            )
        else:
            message = (
                f"{destination} is already in the cache, with no record; give the calibration "
                "another file name, or record the existing file with "
                "sync_records_from_cached_files()."
            )
        error = InvalidRecordError(message)
        error.filename_taken = filename  # type: ignore[attr-defined]
        error.taken_by = owner  # type: ignore[attr-defined]
        raise error
    return destination


def complete_cached_file_record(
    layout: CacheLayout, record: dict, origin: str, cal: Any = None
) -> dict:
    """Complete the record of a calibration file the cache holds or should hold.

    Sets ``id`` (when missing), ``origin``, ``last_updated``, and ``file_md5`` and
    ``file_size`` from the file. A file that is not in the cache's folder (the
    reference's ``sync_records_from_cached_files`` records such files too) is
    logged with a WARNING naming where it belongs; its record is completed all
    the same, and the cache reports it as not downloaded (``koa-cal status``,
    ``koa-cal verify``) until the file is copied there. Its checksums come from
    the model's own file when the model says where that is (``cal._filepath``).

    Parameters
    ----------
    layout : CacheLayout
        The cache.
    record : dict
        The record, completed in place.
    origin : str
        The origin for a record without one.
    cal : Any
        The model the record came from, if any.

    Returns
    -------
    dict
        ``record``.

    Raises
    ------
    InvalidRecordError
        If the record has no file name, or one that would leave the cache.
    ChecksumMismatchError
        If the file's MD5 differs from the record's ``file_md5``.
    """
    if not record.get("filename"):
        raise InvalidRecordError("The record has no filename; add the cached file's name.")
    path = layout.path_for(record["filename"])
    source: Path | None = path
    if not path.is_file():
        source = _model_file(cal, path.name)
        logger.warning(
            "%s is not in %s, where the cache keeps it%s; its record is added, and the "
            "cache counts its file as not downloaded until it is copied there.",
            path.name,
            layout.calibrations_dir,
            f" (it is at {source})" if source is not None else "",
        )
    if source is not None:
        md5, size = file_digest(source)
        if record.get("file_md5") and str(record["file_md5"]).lower() != md5:
            raise ChecksumMismatchError(f"{source} has MD5 {md5}, its record {record['file_md5']}.")
        record.update(file_md5=md5, file_size=size)
    record["id"] = record.get("id") or new_cal_id()
    record["origin"] = str(record.get("origin") or origin).upper()
    if not record.get("last_updated"):
        record["last_updated"] = utc_now()
    return record


def _model_file(cal: Any, filename: str) -> Path | None:
    """The model's own file named ``filename``, when the model keeps its path (``_filepath``)."""
    if cal is None or isinstance(cal, dict):
        return None
    try:
        where = getattr(cal, "_filepath", None)
    except Exception:  # a model whose path cannot be read says nothing of its file
        return None
    if not isinstance(where, (str, os.PathLike)):
        return None
    path = Path(os.fspath(where))
    return path if path.name == filename and path.is_file() else None

"""Reports on a calibration cache: its status, file verification, and version families.

These functions back ``koa-cal status``, ``koa-cal verify`` and ``koa-cal
versions``; pipelines can call them too. They return plain data (dicts and
lists) and print nothing.

Examples
--------
>>> from koa_middleware.cache.report import verify_cache  # doctest: +SKIP
>>> report = verify_cache(store)  # doctest: +SKIP
>>> [p["filename"] for p in report["problems"]]  # doctest: +SKIP
[]
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    ArchiveError,
    AuthenticationError,
    ChecksumMismatchError,
    InvalidRecordError,
    KOAError,
    RemoteUnavailableError,
)
from ..hashing import verify_file

if TYPE_CHECKING:
    from ..store import CalibrationStore

logger = logging.getLogger(__name__)

__all__ = ["cache_status", "folder_size", "verify_cache", "version_families"]


def folder_size(path: str | os.PathLike) -> int:
    """Total size in bytes of the files under ``path`` (0 if it does not exist).

    Examples
    --------
    >>> folder_size("/nonexistent/folder")
    0
    """
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name), follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # removed while walking
    return total


def cache_status(store: CalibrationStore) -> dict[str, Any]:
    """Summarize the local side of a store: records, newest update, missing files, size.

    Parameters
    ----------
    store : CalibrationStore
        The store to inspect.

    Returns
    -------
    dict
        ``instrument``, ``cache_dir``, ``database`` (its path), ``records``
        (how many), ``by_type_origin`` (list of ``{cal_type, origin, count}``),
        ``local_last_updated``, ``missing_files`` (list of ``{id, filename}``)
        and ``cache_bytes`` (``calibrations``, ``database``, ``total``).
    """
    db = store.local_db
    counts = Counter(zip(db.get_column("cal_type"), db.get_column("origin"), strict=True))
    by_type = [
        {"cal_type": cal_type, "origin": origin, "count": count}
        for (cal_type, origin), count in sorted(counts.items(), key=lambda kv: str(kv[0]))
    ]
    missing = [
        {"id": rec["id"], "filename": rec["filename"]} for rec in store.get_missing_local_files()
    ]
    calibrations = folder_size(store.layout.calibrations_dir)
    database = folder_size(store.layout.database_dir)
    return {
        "instrument": store.instrument_name,
        "cache_dir": store.cache_dir,
        "database": db.db_path,
        "records": len(db),
        "by_type_origin": by_type,
        "local_last_updated": db.get_last_updated(),
        "missing_files": missing,
        "cache_bytes": {
            "calibrations": calibrations,
            "database": database,
            "total": calibrations + database,
        },
    }


def _check_record(store: CalibrationStore, record: dict) -> dict | None:
    """Return the problem with one record's cached file, or None when it is intact."""
    base = {"id": record.get("id"), "filename": record.get("filename")}
    try:
        path = store.layout.path_for(record["filename"])
    except (InvalidRecordError, KeyError) as exc:
        return {**base, "problem": "invalid", "detail": str(exc)}
    if not path.is_file():
        return {**base, "problem": "missing", "detail": f"{path} does not exist"}
    try:
        verify_file(path, record)
    except ChecksumMismatchError as exc:
        return {**base, "problem": "corrupt", "detail": str(exc)}
    return None


def verify_cache(store: CalibrationStore, repair: bool = False) -> dict[str, Any]:
    """Check every cached file against its record (existence, size, MD5); optionally repair.

    Parameters
    ----------
    store : CalibrationStore
        The store whose cache to check.
    repair : bool
        Fetch fresh, verified copies of missing or corrupt files from the archive.

    Returns
    -------
    dict
        ``checked`` (records checked), ``ok`` (intact files), ``problems`` (one
        dict per bad file: ``id``, ``filename``, ``problem`` — ``missing``,
        ``corrupt`` or ``invalid`` — ``detail``, and with ``repair``:
        ``repaired`` and, when that failed, ``repair_error``) and
        ``unrepaired`` (how many problems remain).

    Examples
    --------
    >>> verify_cache(store, repair=True)["unrepaired"]  # doctest: +SKIP
    0
    """
    checked = 0
    problems = []
    for record in store.local_db.rows:
        checked += 1
        problem = _check_record(store, record)
        if problem is not None:
            problem["_record"] = record
            problems.append(problem)
    if repair:
        _repair(store, problems)
    for problem in problems:
        problem.pop("_record", None)
    unrepaired = sum(1 for p in problems if not p.get("repaired"))
    return {
        "checked": checked,
        "ok": checked - len(problems),
        "problems": problems,
        "unrepaired": unrepaired,
    }


def _repair(store: CalibrationStore, problems: list[dict]) -> None:
    fatal: str | None = None
    for problem in problems:
        problem["repaired"] = False
        if problem["problem"] == "invalid":
            problem["repair_error"] = "the record itself is invalid; it cannot be fetched"
            continue
        if fatal is not None:
            problem["repair_error"] = fatal
            continue
        try:
            path = store.download_calibration_file(problem["_record"])
            verify_file(path, problem["_record"])
        except (RemoteUnavailableError, AuthenticationError) as exc:
            fatal = str(exc)  # every further attempt would fail the same way
            problem["repair_error"] = fatal
        except (ArchiveError, KOAError, OSError) as exc:
            problem["repair_error"] = str(exc)
        else:
            problem["repaired"] = True
            logger.info("Repaired %s", Path(path).name)


def version_families(store: CalibrationStore) -> list[dict[str, Any]]:
    """List the version families of the local database with their versions.

    Families are as :meth:`~koa_middleware.store.CalibrationStore.get_version_family_values`
    defines them, scoped by origin.

    Returns
    -------
    list[dict]
        One dict per family and origin: ``origin``, ``family`` (the family
        values), ``versions`` (sorted) and ``latest``.
    """
    families: dict[tuple, list[str]] = defaultdict(list)
    values: dict[tuple, dict] = {}
    for row in store.local_db.rows:
        try:
            family = store.get_version_family_values(row)
        except KOAError:
            continue
        key = (row.get("origin"), tuple(sorted((k, str(v)) for k, v in family.items())))
        families[key].append(str(row.get("cal_version")))
        values[key] = family
    result = []
    for key in sorted(families, key=lambda k: (str(k[0]), k[1])):
        versions = sorted(families[key])
        result.append(
            {"origin": key[0], "family": values[key], "versions": versions, "latest": versions[-1]}
        )
    return result

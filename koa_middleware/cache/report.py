"""Reports on a calibration cache: its status, file verification, and version families.

These functions back ``koa-cal status``, ``koa-cal verify`` and ``koa-cal
versions``; pipelines can call them too. They return plain data (dicts and
lists) and print nothing.

Examples
--------
>>> from koa_middleware.cache.report import verify_cache  # doctest: +SKIP
>>> report = verify_cache(store.cache)  # doctest: +SKIP
>>> [p["filename"] for p in report["problems"]]  # doctest: +SKIP
[]
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..database.file_reads import rows_of_files
from ..errors import (
    ArchiveError,
    AuthenticationError,
    ChecksumMismatchError,
    InvalidRecordError,
    KOAError,
    RemoteUnavailableError,
)
from ..hashing import verify_file
from .census import folder_size

if TYPE_CHECKING:
    from ..database.local_database import LocalCalibrationDB
    from .local_cache import LocalCache

logger = logging.getLogger(__name__)

__all__ = [
    "archive_comparison",
    "cache_status",
    "folder_size",
    "time_order",
    "verify_cache",
    "version_families",
]


def time_order(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """Sort key of records by time: ``datetime_obs``, then ``cal_version``, then file name.

    Examples
    --------
    >>> rows = [{"datetime_obs": "2025-03-02T00:00:00.000", "cal_version": "001"},
    ...         {"datetime_obs": "2025-03-01T00:00:00.000", "cal_version": "002"}]
    >>> [r["cal_version"] for r in sorted(rows, key=time_order)]
    ['002', '001']
    """
    return (
        str(record.get("datetime_obs") or ""),
        str(record.get("cal_version") or ""),
        str(record.get("filename") or ""),
    )


def cache_status(cache: LocalCache, max_size: int | None = None) -> dict[str, Any]:
    """Summarize a local cache: records, newest update, missing files, size.

    Parameters
    ----------
    cache : LocalCache
        The cache to inspect (a file a read-only cache holds counts as present).
    max_size : int | None
        The cache's size limit, shown as ``cache_bytes["limit"]``.

    Returns
    -------
    dict
        ``instrument``, ``cache_dir``, ``database`` (its path), ``records``
        (how many), ``by_type_origin`` (list of ``{cal_type, origin, count}``),
        ``local_last_updated``, ``files_not_downloaded`` (how many records
        have no file in the cache), ``missing_files`` (those records as
        ``{id, filename, datetime_obs}``, by time) and ``cache_bytes``
        (``calibrations``, ``database``, ``total``).

    Notes
    -----
    Nothing here opens or measures a calibration's file: the folders are
    listed, and a file counts for the size its record gives (``koa-cal
    verify`` checks the bytes). So the status of a million-record cache
    takes about two seconds, and well under one when asked again of a cache
    that did not change (:mod:`.census_memo`).

    Examples
    --------
    >>> cache_status(store.cache)["files_not_downloaded"]  # doctest: +SKIP
    0
    """
    db = cache.db
    by_type = [
        {"cal_type": cal_type, "origin": origin, "count": count}
        for cal_type, origin, count in sorted(_counts_by_type_and_origin(db), key=str)
    ]
    census = cache.file_census()
    missing = [
        {"id": rec["id"], "filename": rec["filename"], "datetime_obs": rec.get("datetime_obs")}
        for rec in sorted(rows_of_files(db, census.missing), key=time_order)
    ]
    database = folder_size(cache.layout.database_dir)
    return {
        "instrument": cache.layout.instrument,
        "cache_dir": str(cache.layout.root),
        "database": db.db_path,
        "records": sum(row["count"] for row in by_type),
        "by_type_origin": by_type,
        "local_last_updated": db.get_last_updated(),
        "files_not_downloaded": len(missing),
        "missing_files": missing,
        "cache_bytes": {
            "calibrations": census.own_bytes,
            "database": database,
            "total": census.own_bytes + database,
            "limit": max_size,
        },
        "retracted": len(db.retractions()),
    }


def _counts_by_type_and_origin(db: LocalCalibrationDB) -> list[tuple]:
    """``(cal_type, origin, count)`` of every pair present.

    Where every record has one origin (as a cache synced from one archive
    does), the counts per ``cal_type`` are read from its index alone, which is
    several times faster at a million records than grouping by both.
    """
    origins = db.count_by("origin")
    if len(origins) == 1:
        ((origin, _),) = origins
        return [(cal_type, origin, count) for cal_type, count in db.count_by("cal_type")]
    return db.count_by("cal_type", "origin")


def archive_comparison(db: LocalCalibrationDB, remote_db: Any) -> dict[str, int]:
    """How far a cache's database is ahead of and behind its archive.

    Only ids and ``last_updated`` are fetched from the archive.

    Parameters
    ----------
    db : LocalCalibrationDB
        The cache's database.
    remote_db : RemoteCalibrationDB
        The archive client.

    Returns
    -------
    dict
        ``not_pushed``: local records the archive lacks (what ``koa-cal push``
        uploads); ``not_pulled``: archive records the cache lacks, or holds
        in an older state (what ``koa-cal sync`` pulls).

    Raises
    ------
    RemoteUnavailableError, AuthenticationError, ArchiveError
        If the archive cannot answer.

    Examples
    --------
    >>> archive_comparison(store.local_db, store.remote_db)  # doctest: +SKIP
    {'not_pushed': 0, 'not_pulled': 2014}
    """
    local = dict(zip(db.get_column("id"), db.get_column("last_updated"), strict=True))
    remote: dict[str, Any] = {}
    for page in remote_db.iter_query(columns="id,last_updated"):
        remote.update((rec["id"], rec.get("last_updated")) for rec in page)
    not_pulled = sum(
        1
        for cal_id, updated in remote.items()
        if cal_id not in local or str(updated or "") > str(local[cal_id] or "")
    )
    not_pushed = sum(1 for cal_id in local if cal_id not in remote)
    return {"not_pushed": not_pushed, "not_pulled": not_pulled}


def _check_record(cache: LocalCache, record: dict) -> dict | None:
    """Return the problem with one record's cached file, or None when it is intact.

    A file a read-only cache holds intact is served from there, so it is intact
    here. A record whose file is absent and was never placed in the cache (no
    stat of it was recorded) is ``not_downloaded``; one whose file was placed
    and is gone is ``missing``.
    """
    base = {"id": record.get("id"), "filename": record.get("filename")}
    try:
        path = cache.layout.path_for(record["filename"])
    except (InvalidRecordError, KeyError) as exc:
        return {**base, "problem": "invalid", "detail": str(exc)}
    if not os.path.lexists(path) and cache.readonly.file_for(record) is not None:
        return None
    if not path.is_file() and not os.path.lexists(path):
        if cache.db.get_file_stat(record["id"]) is None:
            return {**base, "problem": "not_downloaded", "detail": f"{path} not downloaded yet"}
        return {**base, "problem": "missing", "detail": f"{path} was placed and is gone"}
    if not path.is_file():
        return {**base, "problem": "corrupt", "detail": f"{path} is not a regular file"}
    try:
        verify_file(path, record)
    except ChecksumMismatchError as exc:
        return {**base, "problem": "corrupt", "detail": str(exc)}
    return None


def verify_cache(
    cache: LocalCache, repair: bool = False, fetch: Callable[[dict], Any] | None = None
) -> dict[str, Any]:
    """Check every cached file against its record (existence, size, MD5); optionally repair.

    Parameters
    ----------
    cache : LocalCache
        The cache to check (files served from its read-only caches included).
    repair : bool
        Fetch fresh, verified copies of missing or corrupt files with ``fetch``.
    fetch : callable | None
        ``record -> path``: downloads a record's file into the cache (the
        store's ``download_calibration_file``); needed for ``repair``.

    Returns
    -------
    dict
        ``checked`` (records checked), ``ok`` (intact files),
        ``not_downloaded`` (``{id, filename}`` of records whose file was never
        placed in the cache: the state after a sync without files, not a
        problem; ``repair`` leaves them), ``problems`` (one dict per file lost
        or damaged after it was placed: ``id``, ``filename``, ``problem`` —
        ``missing``, ``corrupt`` or ``invalid`` — ``detail``, and with
        ``repair``: ``repaired`` and, when that failed, ``repair_error``) and
        ``unrepaired`` (how many problems remain). Lists are in time order.

    Examples
    --------
    >>> report = verify_cache(store.cache, True, store.download_calibration_file)  # doctest: +SKIP
    >>> report["unrepaired"]  # doctest: +SKIP
    0
    """
    checked = 0
    problems = []
    not_downloaded = []
    for record in sorted(cache.db.rows, key=time_order):
        checked += 1
        problem = _check_record(cache, record)
        if problem is None:
            continue
        if problem["problem"] == "not_downloaded":
            not_downloaded.append({"id": problem["id"], "filename": problem["filename"]})
            continue
        problem["_record"] = record
        problems.append(problem)
    if repair:
        _repair(fetch, problems)
    for problem in problems:
        problem.pop("_record", None)
    unrepaired = sum(1 for p in problems if not p.get("repaired"))
    return {
        "checked": checked,
        "ok": checked - len(problems) - len(not_downloaded),
        "not_downloaded": not_downloaded,
        "problems": problems,
        "unrepaired": unrepaired,
    }


def _repair(fetch: Callable[[dict], Any] | None, problems: list[dict]) -> None:
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
            if fetch is None:
                raise RemoteUnavailableError("No archive to fetch fresh copies from.")
            path = fetch(problem["_record"])
            verify_file(path, problem["_record"])
        except (RemoteUnavailableError, AuthenticationError) as exc:
            fatal = str(exc)  # every further attempt would fail the same way
            problem["repair_error"] = fatal
        except (ArchiveError, KOAError, OSError) as exc:
            problem["repair_error"] = str(exc)
        else:
            problem["repaired"] = True
            logger.info("Repaired %s", Path(path).name)


def version_families(
    db: LocalCalibrationDB, family_of: Callable[[dict], dict]
) -> list[dict[str, Any]]:
    """List the version families of a local database with their versions.

    Families are as :meth:`~koa_middleware.store.CalibrationStore.get_version_family_values`
    defines them, scoped by origin.

    Returns
    -------
    list[dict]
        One dict per family and origin: ``origin``, ``family`` (the family
        values), ``versions`` (sorted) and ``latest``; families in the time
        order of their first calibration (``datetime_obs``).

    Examples
    --------
    >>> version_families(store.local_db, store.get_version_family_values)[0][
    ...     "versions"]  # doctest: +SKIP
    ['001', '002']
    """
    families: dict[tuple, list[str]] = defaultdict(list)
    values: dict[tuple, dict] = {}
    first: dict[tuple, tuple] = {}
    for row in db.rows:
        try:
            family = family_of(row)
        except KOAError:
            continue
        key = (row.get("origin"), tuple(sorted((k, str(v)) for k, v in family.items())))
        families[key].append(str(row.get("cal_version")))
        values[key] = family
        first[key] = min(first.get(key, time_order(row)), time_order(row))
    result = []
    for key in sorted(families, key=lambda k: (first[k], str(k[0]), k[1])):
        versions = sorted(families[key])
        result.append(
            {"origin": key[0], "family": values[key], "versions": versions, "latest": versions[-1]}
        )
    return result

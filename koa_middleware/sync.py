"""Keeping the local calibration database and the archive in step.

Plain functions that :class:`koa_middleware.store.CalibrationStore` calls:

- :func:`missing_records`: which records one side has and the other lacks;
- :func:`pull_records`: bring the archive's records into the local database,
  incrementally through the v2 changes feed (with its cursor kept in the local
  database), or by comparing ids (v1, or when asked for specific records);
- :func:`push_records`: upload local calibrations (file first, then record).

Records go into the local database in large batches (``local_db.add``), and
only ids and timestamps are compared, so a first sync of 100,000 records stays
fast and small in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .cache import CacheLayout
from .errors import (
    ArchiveError,
    CalibrationNotFoundError,
    ConfigurationError,
    InvalidRecordError,
)
from .hashing import file_digest
from .records import validate_cal_id
from .transfer import progress_bar

if TYPE_CHECKING:
    from .database.local_database import LocalCalibrationDB
    from .database.remote_database import RemoteCalibrationDB

logger = logging.getLogger(__name__)

__all__ = ["missing_records", "pull_records", "push_records", "cursor_key"]

_MODES = ("id", "last_updated")
_SOURCES = ("remote", "local")
# Ids per "id IN (...)" lookup in the local database (well under SQLite's variable limit).
_LOOKUP_CHUNK = 500
# Records fetched one by one below this many; above it the archive's records are paged.
_PER_ID_LIMIT = 200
# Fields whose values are (nearly) never shared between records.
_UNIQUE_FIELDS = frozenset({"id", "filename", "file_md5"})


def cursor_key(remote_db: RemoteCalibrationDB) -> str:
    """The local-database key under which the changes-feed cursor of an archive is kept.

    It names the archive's URL and the instrument, so two archives never share a cursor.

    Examples
    --------
    >>> class R: display_url = "http://127.0.0.1:8000"; instrument_name = "hispec"
    >>> cursor_key(R())
    'changes_cursor http://127.0.0.1:8000 hispec'
    """
    return f"changes_cursor {remote_db.display_url} {remote_db.instrument_name}"


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ConfigurationError(f"Invalid mode {mode!r}: use 'id' or 'last_updated'.")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _local_ids(local_db: LocalCalibrationDB) -> set[str]:
    if len(local_db) == 0:
        return set()
    return {str(value) for value in local_db.get_column("id")}


def _local_versions(local_db: LocalCalibrationDB, ids: Sequence[str]) -> dict[str, Any]:
    """Map each of ``ids`` that the local database holds to its ``last_updated``."""
    found: dict[str, Any] = {}
    for chunk in _chunks(ids, _LOOKUP_CHUNK):
        marks = ", ".join("?" * len(chunk))
        rows = local_db.table.rows_where(f"id IN ({marks})", list(chunk), select="id, last_updated")
        for row in rows:
            found[row["id"]] = row["last_updated"]
    return found


def _remote_ids(remote_db: RemoteCalibrationDB) -> set[str]:
    ids: set[str] = set()
    for page in remote_db.iter_query(columns="id,last_updated"):
        ids.update(rec["id"] for rec in page)
    return ids


def missing_records(
    local_db: LocalCalibrationDB,
    remote_db: RemoteCalibrationDB,
    source: str = "remote",
    mode: str = "id",
) -> list[dict]:
    """Return the records that one side holds and the other lacks.

    Parameters
    ----------
    local_db : LocalCalibrationDB
        The local database.
    remote_db : RemoteCalibrationDB
        The archive client.
    source : {'remote', 'local'}
        ``'remote'``: records on the archive missing locally; ``'local'``:
        local records missing on the archive.
    mode : {'id', 'last_updated'}
        ``'id'``: records whose id the other side lacks. ``'last_updated'``:
        records newer than the other side's newest ``last_updated``.

    Returns
    -------
    list[dict]
        Full records of the source side.

    Raises
    ------
    ConfigurationError
        If ``source`` or ``mode`` is not one of the values above.
    InvalidRecordError
        If the archive sends an invalid record.

    Examples
    --------
    >>> missing_records(store.local_db, store.remote_db, source="local")  # doctest: +SKIP
    [{'id': '...', 'filename': 'hispec_dark_001.fits', ...}]
    """
    _check_mode(mode)
    if source not in _SOURCES:
        raise ConfigurationError(f"Invalid source {source!r}: use 'remote' or 'local'.")
    if source == "remote":
        if mode == "last_updated":
            newest = local_db.get_last_updated()
            filters = {"last_updated_start": newest} if newest else {}
            return [rec for page in remote_db.iter_query(**filters) for rec in page]
        return _remote_records_missing_locally(local_db, remote_db)
    if mode == "last_updated":
        newest = remote_db.get_last_updated()
        if newest is None:
            return [dict(row) for row in local_db.rows]
        return [dict(row) for row in local_db.table.rows_where("last_updated > ?", [newest])]
    remote_ids = _remote_ids(remote_db)
    return [dict(row) for row in local_db.rows if row["id"] not in remote_ids]


def _remote_records_missing_locally(
    local_db: LocalCalibrationDB, remote_db: RemoteCalibrationDB
) -> list[dict]:
    local_ids = _local_ids(local_db)
    if remote_db.protocol < 2:
        return [rec for rec in remote_db.query() if rec["id"] not in local_ids]
    # Compare ids only, then fetch the full records that are missing.
    missing = [
        rec["id"]
        for page in remote_db.iter_query(columns="id,last_updated")
        for rec in page
        if rec["id"] not in local_ids
    ]
    if len(missing) <= _PER_ID_LIMIT:
        found = (remote_db.query(cal_id=cal_id) for cal_id in missing)
        return [rec for rec in found if rec]
    wanted = set(missing)
    return [rec for page in remote_db.iter_query() for rec in page if rec["id"] in wanted]


def _add(
    local_db: LocalCalibrationDB,
    records: Sequence[dict],
    batch: int,
    progress: bool | None = False,
) -> None:
    with progress_bar(len(records), "sync", progress, unit="record") as bar:
        for chunk in _chunks(records, batch):
            local_db.add(list(chunk))
            bar.update(len(chunk))


def pull_records(
    local_db: LocalCalibrationDB,
    remote_db: RemoteCalibrationDB,
    cals: Iterable[Mapping[str, Any] | str] | str | None = None,
    mode: str = "id",
    progress: bool | None = False,
) -> list[dict]:
    """Bring the archive's records into the local database.

    - With ``cals`` (records or ids): fetch just those records from the archive.
    - ``mode='id'`` on a v2 archive: read the changes feed from the cursor kept
      in the local database (:func:`cursor_key`); every new or changed record is
      added. With no cursor (first sync, cursor lost, emptied database) the feed
      is read from the start, and records already held unchanged are skipped.
    - ``mode='id'`` on a v1 archive: add the records whose ids are missing locally.
    - ``mode='last_updated'``: add the records newer than the newest local
      ``last_updated``.

    Records are added in large batches; the cursor moves only after a batch
    is stored, so an interrupted sync resumes where it stopped.

    Parameters
    ----------
    local_db : LocalCalibrationDB
        The local database (needs ``add``, ``table``, ``get_meta``, ``set_meta``).
    remote_db : RemoteCalibrationDB
        The archive client.
    cals : Iterable[dict | str] | str | None
        Records or ids to sync; None for all. ``'id'`` or ``'last_updated'`` is
        read as ``mode``.
    mode : {'id', 'last_updated'}
        See above.
    progress : bool | None
        Show a progress bar (terminal only).

    Returns
    -------
    list[dict]
        The records added or updated locally.

    Raises
    ------
    CalibrationNotFoundError
        If one of ``cals`` is not on the archive (nothing is added then).
    InvalidRecordError
        If the archive sends an invalid record (the batches before it are kept).

    Examples
    --------
    >>> added = pull_records(store.local_db, store.remote_db)  # doctest: +SKIP
    >>> len(added)  # doctest: +SKIP
    100
    """
    if isinstance(cals, str) and cals in _MODES:
        mode, cals = cals, None
    _check_mode(mode)
    if cals is not None:
        return _pull_selected(local_db, remote_db, cals)
    if mode == "last_updated":
        records = missing_records(local_db, remote_db, "remote", "last_updated")
        _add(local_db, records, remote_db.page_size, progress)
        return records
    if remote_db.protocol >= 2:
        return _pull_changes(local_db, remote_db, progress)
    records = missing_records(local_db, remote_db, "remote", "id")
    _add(local_db, records, remote_db.page_size, progress)
    logger.info("Added %d record(s) from %s.", len(records), remote_db.display_url)
    return records


def _pull_selected(
    local_db: LocalCalibrationDB,
    remote_db: RemoteCalibrationDB,
    cals: Iterable[Mapping[str, Any] | str] | str,
) -> list[dict]:
    if isinstance(cals, str | Mapping):
        cals = [cals]
    ids = [validate_cal_id(cal["id"] if isinstance(cal, Mapping) else cal) for cal in cals]
    records = []
    for cal_id in dict.fromkeys(ids):
        record = remote_db.query(cal_id=cal_id)
        if not record:
            raise CalibrationNotFoundError(
                f"The archive at {remote_db.display_url} has no calibration {cal_id}; "
                "nothing was synced."
            )
        records.append(record)
    _add(local_db, records, remote_db.page_size)
    return records


def _change_pages(remote_db: RemoteCalibrationDB, since: int) -> Iterator[dict]:
    """Yield the changes feed page by page, asking for the next page while one is processed."""

    def fetch(since: int) -> dict:
        # Unchecked here: LocalCalibrationDB.add checks every record before storing it.
        return remote_db.changes(since, remote_db.page_size, validate=False)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="koa-sync") as pool:
        pending: Future | None = pool.submit(fetch, since)
        while pending is not None:
            page = pending.result()
            pending = None
            if page["more"] and page["records"]:
                pending = pool.submit(fetch, page["next"])
            try:
                yield page
            except GeneratorExit:
                if pending is not None:
                    pending.cancel()
                raise


def _pull_changes(
    local_db: LocalCalibrationDB, remote_db: RemoteCalibrationDB, progress: bool | None
) -> list[dict]:
    key = cursor_key(remote_db)
    stored = local_db.get_meta(key)
    since = int(stored) if stored is not None and str(stored).isdigit() else 0
    was_empty = len(local_db) == 0
    if since and was_empty:
        logger.info("The local database is empty; reading the changes feed from the start.")
        since = 0
    interned: dict[str, str] = {}
    added: list[dict] = []
    with progress_bar(None, "sync", progress, unit="record") as bar:
        pages = _change_pages(remote_db, since)
        try:
            for page in pages:
                records = page["records"]
                if was_empty:
                    fresh = records
                else:
                    ids = [rec.get("id") for rec in records]
                    known = _local_versions(local_db, [i for i in ids if isinstance(i, str)])
                    fresh = [
                        rec
                        for rec, cal_id in zip(records, ids, strict=True)
                        if cal_id not in known or known[cal_id] != rec.get("last_updated")
                    ]
                # The records and the cursor that covers them are stored together.
                with local_db.write_transaction():
                    stored = _add_from_archive(local_db, remote_db, fresh) if fresh else []
                    if page["next"] != since:
                        local_db.set_meta(key, str(page["next"]))
                since = page["next"]
                added.extend(_share_values(rec, interned) for rec in stored)
                # A bulk load fills SQLite's page cache with pages nobody reads soon.
                local_db.conn.execute("PRAGMA shrink_memory")
                bar.update(len(records))
        finally:
            pages.close()
    logger.info(
        "Synced %d record(s) from %s (changes up to %d).", len(added), remote_db.display_url, since
    )
    return added


def _add_from_archive(
    local_db: LocalCalibrationDB, remote_db: RemoteCalibrationDB, records: list[dict]
) -> list[dict]:
    """Store records as the archive sent them; ``add`` checks each one, all or nothing."""
    try:
        return local_db.add(records)
    except InvalidRecordError as exc:
        raise InvalidRecordError(
            f"The archive at {remote_db.display_url} sent an invalid record: {exc} Nothing "
            "from this batch was stored; report the record to the archive operators."
        ) from exc


def _share_values(record: dict, interned: dict[str, str]) -> dict:
    """Let equal short strings (types, origins, versions, timestamps) share one object.

    A large sync returns every record it added; sharing the many repeated
    values keeps that list small in memory.
    """
    for key, value in record.items():
        if type(value) is str and len(value) <= 32 and key not in _UNIQUE_FIELDS:
            record[key] = interned.setdefault(value, value)
    return record


def push_records(
    local_db: LocalCalibrationDB,
    remote_db: RemoteCalibrationDB,
    layout: CacheLayout,
    mode: str = "id",
    progress: bool | None = False,
) -> list[dict]:
    """Publish local calibrations on the archive: each file first, then the records.

    Every local record missing on the archive (see :func:`missing_records`,
    ``source='local'``) has its file uploaded (``PUT files/ID``, checked by MD5
    on the archive; already there is fine), then the records are added in
    batches, so the archive never holds a record whose file it cannot serve.

    Parameters
    ----------
    local_db : LocalCalibrationDB
        The local database.
    remote_db : RemoteCalibrationDB
        The archive client (protocol 2, with a 'write' token).
    layout : CacheLayout
        The cache holding the files.
    mode : {'id', 'last_updated'}
        How to find the records to push.
    progress : bool | None
        Show a progress bar (terminal only).

    Returns
    -------
    list[dict]
        The records added to the archive.

    Raises
    ------
    ArchiveError
        If the archive speaks only protocol 1 (no uploads), or refuses a file (409).
    CalibrationNotFoundError
        If a record's file is not in the cache (nothing is pushed then).
    ChecksumMismatchError
        If a file does not match its record.
    AuthenticationError
        401, or 403 for a token without the 'write' scope.

    Examples
    --------
    >>> pushed = push_records(store.local_db, store.remote_db, store.layout)  # doctest: +SKIP
    """
    _check_mode(mode)
    if remote_db.protocol < 2:
        raise ArchiveError(
            f"The archive at {remote_db.display_url} speaks protocol 1, which cannot receive "
            "files; push to an archive that speaks protocol 2 (koa-archive).",
            url=remote_db.display_url,
        )
    records = missing_records(local_db, remote_db, "local", mode)
    if not records:
        return []
    paths = {rec["id"]: layout.path_for(rec["filename"]) for rec in records}
    absent = [rec["filename"] for rec in records if not paths[rec["id"]].is_file()]
    if absent:
        raise CalibrationNotFoundError(
            f"{len(absent)} calibration file(s) to push are not in the cache "
            f"({', '.join(absent[:5])}); fetch or register them again. Nothing was pushed."
        )
    with progress_bar(len(records), "push", progress, unit="file") as bar:
        for rec in records:
            path = paths[rec["id"]]
            if not rec.get("file_md5") or rec.get("file_size") is None:
                rec["file_md5"], rec["file_size"] = file_digest(path)
            remote_db.upload_calibration_file(rec["id"], path, rec["file_md5"])
            bar.update(1)
    remote_db.add(records)
    logger.info("Pushed %d calibration(s) to %s.", len(records), remote_db.display_url)
    return records

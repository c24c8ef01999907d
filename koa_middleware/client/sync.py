"""Keeping the local calibration database and the archive in step.

Plain functions that :class:`koa_middleware.store.CalibrationStore` calls:

- :func:`missing_records`: which records one side has and the other lacks;
- :func:`pull_records`: bring the archive's records into the local database,
  incrementally through the v2 changes feed (with its cursor kept in the local
  database), or by comparing ids (v1, or when asked for specific records);
- :func:`~koa_middleware.client.push.push_records` (in its own module):
  upload local calibrations (file first, then record).

Records go into the local database in large batches (``local_db.add``), and
only ids and timestamps are compared, so a first sync of 100,000 records stays
fast and small in memory.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import (
    CalibrationNotFoundError,
    ConfigurationError,
)
from ..records import is_cal_id, validate_cal_id
from .archive_records import ArchiveIntake, SyncReport, set_aside_key
from .downloads import progress_bar

if TYPE_CHECKING:
    from ..database.local_database import LocalCalibrationDB
    from ..database.reading import StoredVersion
    from .remote_database import RemoteCalibrationDB

logger = logging.getLogger(__name__)

__all__ = [
    "missing_records",
    "pull_records",
    "sync_from_archive",
    "SyncReport",
    "cursor_key",
    "set_aside_key",
]

_MODES = ("id", "last_updated")
_SOURCES = ("remote", "local")
# Records fetched one by one below this many; above it the archive's records are paged.
_PER_ID_LIMIT = 200
# Records stored per transaction from a streamed answer (at least): fewer commits of a
# large sync, each rewriting the index pages it touched, at a few MB of records in hand.
_STREAM_BATCH = 10_000
# Records of the changes feed stored per transaction (at least one page): a page of a
# few thousand random ids dirties about as many index pages of a large table as ten
# pages do, so grouping pages cuts what the commits write. The cursor moves with them.
# At 1,000,000 records, 200,000 per commit syncs in 38 s where 30,000 took 45 s; a group
# holds the write lock about 7 s, within another writer's 30-second busy timeout.
_CHANGES_BATCH = 200_000
# SQLite's page cache while the changes are stored (MiB): room for the id indexes a
# batch touches at 1,000,000 records, within the sync's memory budget.
_CHANGES_CACHE_MB = 128


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


def _local_ids(local_db: LocalCalibrationDB) -> set[str]:
    if len(local_db) == 0:
        return set()
    return {str(value) for value in local_db.get_column("id")}


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
        return local_db.records_updated_after(newest)
    remote_ids = _remote_ids(remote_db)
    return [dict(row) for row in local_db.rows if row["id"] not in remote_ids]


def _remote_records_missing_locally(
    local_db: LocalCalibrationDB, remote_db: RemoteCalibrationDB
) -> list[dict]:
    local_ids = _local_ids(local_db)
    if remote_db.protocol < 2:
        # One streamed answer: only the missing records are checked and kept.
        return [
            remote_db.check_record(raw)
            for raw in remote_db.iter_records()
            if not (isinstance(raw, Mapping) and _hashable(raw.get("id")) in local_ids)
        ]
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


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str) else None


def pull_records(
    local_db: LocalCalibrationDB,
    remote_db: RemoteCalibrationDB,
    cals: Iterable[Mapping[str, Any] | str] | str | None = None,
    mode: str = "id",
    progress: bool | None = False,
    *,
    set_aside: bool = False,
) -> list[dict]:
    """Bring the archive's records into the local database; return those added.

    The same as :func:`sync_from_archive`, returning only the records added.
    By default (``set_aside=False``) a record that cannot be stored raises
    :class:`InvalidRecordError` (the batches before it are kept).

    Examples
    --------
    >>> added = pull_records(store.local_db, store.remote_db)  # doctest: +SKIP
    >>> len(added)  # doctest: +SKIP
    100
    """
    report = sync_from_archive(local_db, remote_db, cals, mode, progress, strict=not set_aside)
    return report.added


def sync_from_archive(
    local_db: LocalCalibrationDB,
    remote_db: RemoteCalibrationDB,
    cals: Iterable[Mapping[str, Any] | str] | str | None = None,
    mode: str = "id",
    progress: bool | None = False,
    *,
    strict: bool = False,
) -> SyncReport:
    """Bring the archive's records into the local database.

    - With ``cals`` (records or ids): fetch just those records from the archive.
    - ``mode='id'`` on a v2 archive: read the changes feed from the cursor kept
      in the local database (:func:`cursor_key`); every new or changed record is
      added. With no cursor (first sync, cursor lost, emptied database) the feed
      is read from the start, and records already held unchanged (the same
      ``last_updated``, and the same retraction as the archive's) are skipped.
      Then the archive's record count is compared with the local one (two
      one-record pages); only when they differ are the ids compared, and every
      record whose id the local database lacks (also one deleted locally, that
      the cursor passed long ago) is fetched.
    - ``mode='id'`` on a v1 archive: the archive's one answer is read as a
      stream, and the records whose ids are missing locally are added.
    - ``mode='last_updated'``: add the records newer than the newest local
      ``last_updated``.

    On a v2 archive the records read carry their lifecycle (publication time,
    retraction time and reason), retracted ones included: a retraction or its
    undoing gives the record a new ``seq`` and ``last_updated``, so the changes
    feed and ``mode='last_updated'`` bring it, and the local database keeps it
    beside the record (selection then skips a retracted calibration).

    A record that cannot be stored (it breaks the record rules, or SQLite
    refuses it) is set aside: logged with its id and the reason, counted in the
    report, its id kept in the local database, and tried again by the next sync.
    The others are stored. Records are added in large batches; the cursor
    moves only after a batch is stored, so an interrupted sync resumes where
    it stopped.

    Parameters
    ----------
    local_db : LocalCalibrationDB
        The local database.
    remote_db : RemoteCalibrationDB
        The archive client.
    cals : Iterable[dict | str] | str | None
        Records or ids to sync; None for all. ``'id'`` or ``'last_updated'`` is
        read as ``mode``.
    mode : {'id', 'last_updated'}
        See above.
    progress : bool | None
        Show a progress bar (terminal only).
    strict : bool
        Raise :class:`InvalidRecordError` for a record that cannot be stored
        instead of setting it aside.

    Returns
    -------
    SyncReport
        The records added and the ones set aside.

    Raises
    ------
    CalibrationNotFoundError
        If one of ``cals`` is not on the archive (nothing is added then).
    ArchiveError, RemoteUnavailableError, AuthenticationError
        If the archive fails (the batches stored before are kept).

    Examples
    --------
    >>> report = sync_from_archive(store.local_db, store.remote_db)  # doctest: +SKIP
    >>> len(report.added), report.set_aside  # doctest: +SKIP
    (100, {})
    """
    if isinstance(cals, str) and cals in _MODES:
        mode, cals = cals, None
    _check_mode(mode)
    intake = ArchiveIntake(local_db, remote_db, strict)
    if cals is not None:
        _pull_selected(intake, cals)
        return intake.report
    if mode == "last_updated":
        newest = local_db.get_last_updated()
        filters = {"last_updated_start": newest} if newest else {}
        _store_stream(intake, remote_db.iter_records(**filters), progress)
    elif remote_db.protocol >= 2:
        # Where the last check found as many records on both sides, at this cursor and
        # with this many of its records here, the counts are still equal once the changes
        # since then are stored (the archive never drops a record).
        before = _count_mark(local_db, remote_db)
        _pull_changes(intake, progress)
        checked = before == local_db.get_meta(_checked_key(remote_db))
        _pull_missing_ids(intake, progress, counts_equal=checked and not intake.report.set_aside)
    else:
        local_ids = _local_ids(local_db)
        missing = remote_db.iter_records()
        if local_ids:  # a first sync needs no comparing
            missing = (
                raw
                for raw in missing
                if not (isinstance(raw, Mapping) and _hashable(raw.get("id")) in local_ids)
            )
        _store_stream(intake, missing, progress)
    intake.retry_pending()
    report = intake.report
    logger.info(
        "Synced %d record(s) from %s; %d set aside.",
        len(report.added),
        remote_db.display_url,
        len(report.set_aside),
    )
    return report


def _pull_selected(intake: ArchiveIntake, cals: Iterable[Mapping[str, Any] | str] | str) -> None:
    if isinstance(cals, str | Mapping):
        cals = [cals]
    ids = [validate_cal_id(cal["id"] if isinstance(cal, Mapping) else cal) for cal in cals]
    raws = []
    for cal_id in dict.fromkeys(ids):
        raw = intake.remote_db.fetch_raw(cal_id)
        if raw is None:
            raise CalibrationNotFoundError(
                f"The archive at {intake.remote_db.display_url} has no calibration {cal_id}; "
                "nothing was synced."
            )
        raws.append(raw)
    with intake.local_db.write_transaction():
        intake.store(raws)


def _checked_key(remote_db: RemoteCalibrationDB) -> str:
    return f"counts_checked {remote_db.display_url} {remote_db.instrument_name}"


def _count_mark(local_db: LocalCalibrationDB, remote_db: RemoteCalibrationDB) -> str:
    """The changes cursor and the local database's change mark, as one string.

    A record or publication time added or deleted here changes the mark
    (:meth:`~koa_middleware.database.local_database.LocalCalibrationDB.change_mark`),
    which costs no counting of a large table.
    """
    cursor = local_db.get_meta(cursor_key(remote_db))
    return f"{cursor} {local_db.change_mark()}"


def _pull_missing_ids(
    intake: ArchiveIntake, progress: bool | None, counts_equal: bool = False
) -> None:
    """v2: fetch every record whose id the local database lacks, when the counts differ.

    ``counts_equal``: known without asking the archive (see :func:`sync_from_archive`).
    """
    local_db, remote_db = intake.local_db, intake.remote_db
    # Records registered here and not pushed yet are not the archive's: left out.
    if counts_equal or remote_db.compare_count(local_db.count_published()) == 0:
        # As many records on both sides: remembered, so the next sync need not ask.
        local_db.set_meta(_checked_key(remote_db), _count_mark(local_db, remote_db))
        return
    local_db.set_meta(_checked_key(remote_db), None)
    local_ids = _local_ids(local_db)
    missing = []
    for rec in remote_db.iter_records(columns="id"):
        cal_id = rec.get("id") if isinstance(rec, Mapping) else None
        if isinstance(cal_id, str) and cal_id not in local_ids and cal_id not in intake.handled:
            missing.append(cal_id)
    if not missing:
        return
    logger.info(
        "%d record(s) of %s are missing locally; fetching them.",
        len(missing),
        remote_db.display_url,
    )
    if len(missing) <= _PER_ID_LIMIT:
        found = (remote_db.fetch_raw(cal_id) for cal_id in missing if is_cal_id(cal_id))
        raws: Iterable[Any] = (raw for raw in found if raw is not None)
    else:
        wanted = set(missing)
        raws = (
            raw
            for raw in remote_db.iter_records()
            if isinstance(raw, Mapping) and _hashable(raw.get("id")) in wanted
        )
    _store_stream(intake, raws, progress)


def _held_unchanged(rec: Any, held: StoredVersion | None) -> bool:
    """Whether the local database holds the archive's record ``rec`` as it is (skip it then).

    The same ``last_updated`` is not enough: a record copied from a read-only
    shared cache comes without its retraction, so the retraction the
    archive's record carries must be held here too.
    """
    if held is None or held.last_updated != rec.get("last_updated"):
        return False
    return "retracted_at" not in rec or held.retracted_at == rec["retracted_at"]


def _store_stream(intake: ArchiveIntake, raws: Iterable[Any], progress: bool | None) -> None:
    with progress_bar(None, "sync", progress, unit="record") as bar:

        def done(count: int) -> None:
            intake.local_db.release_memory()
            bar.update(count)

        batch = max(intake.remote_db.page_size, _STREAM_BATCH)
        intake.store_stream(raws, batch, done)


def _pull_changes(intake: ArchiveIntake, progress: bool | None) -> None:
    local_db, remote_db = intake.local_db, intake.remote_db
    key = cursor_key(remote_db)
    stored = local_db.get_meta(key)
    since = int(stored) if stored is not None and str(stored).isdigit() else 0
    was_empty = not local_db
    if since and was_empty:
        logger.info("The local database is empty; reading the changes feed from the start.")
        since = 0
    with (
        progress_bar(None, "sync", progress, unit="record") as bar,
        local_db.larger_page_cache(_CHANGES_CACHE_MB),
    ):
        pages = remote_db.iter_change_pages(since)
        group = _ChangesGroup(local_db)
        try:
            for page in pages:
                records = page["records"]
                if was_empty:
                    fresh = records
                else:
                    ids = [
                        _hashable(rec.get("id")) if isinstance(rec, Mapping) else None
                        for rec in records
                    ]
                    known = local_db.versions_of([i for i in ids if i is not None])
                    fresh = [
                        rec
                        for rec, cal_id in zip(records, ids, strict=True)
                        if not _held_unchanged(rec, known.get(cal_id))
                    ]
                # The records, the set-aside ids and the cursor are stored together.
                with group.transaction(len(records)):
                    if fresh:
                        intake.store(fresh)
                    if page["next"] != since:
                        local_db.set_meta(key, str(page["next"]))
                since = page["next"]
                bar.update(len(records))
            group.commit()
        finally:
            try:
                pages.close()
            finally:
                group.close()
    logger.debug("Read the changes of %s up to %d.", remote_db.display_url, since)


class _ChangesGroup:
    """Pages of the changes feed stored in one transaction, up to :data:`_CHANGES_BATCH` records.

    A page that fails leaves the pages before it to be committed by
    :meth:`close`, with the cursor of the last whole one; a sync killed
    mid-group loses only the uncommitted pages, and its cursor with them.
    The records of a page are added in a savepoint of their own
    (:func:`~koa_middleware.client.archive_records.store_what_fits`), and
    the cursor is written after them: what a failing page left is stored
    again, unchanged, by the next sync. (A second savepoint around each page
    would cost a sixth of a million-record sync.)
    """

    def __init__(self, local_db: LocalCalibrationDB):
        self.local_db = local_db
        self.records = 0
        self._outer: Any = None

    @contextlib.contextmanager
    def transaction(self, count: int) -> Iterator[None]:
        """Store one page: in the group's transaction, committed once it holds enough."""
        if self._outer is None:
            self._outer = self.local_db.write_transaction()
            self._outer.__enter__()
        yield
        self.records += count
        if self.records >= _CHANGES_BATCH:
            self.commit()

    def commit(self) -> None:
        """Commit the pages stored so far, and give back the page cache's memory."""
        outer, self._outer, self.records = self._outer, None, 0
        if outer is not None:
            outer.__exit__(None, None, None)
            self.local_db.release_memory()

    def close(self) -> None:
        """Commit the pages stored before an error (each page is whole or absent)."""
        self.commit()

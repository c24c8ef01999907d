"""Publishing local calibrations on the archive: each file first, then the records."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..cache.layout import CacheLayout
from ..errors import ArchiveError, CalibrationNotFoundError, KOAError
from ..hashing import file_digest
from .progress import progress_bar
from .sync import _check_mode, missing_records

if TYPE_CHECKING:
    from ..database.local_database import LocalCalibrationDB
    from .remote_database import RemoteCalibrationDB

logger = logging.getLogger(__name__)

__all__ = ["push_records", "push_retractions", "take_archive_versions"]


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
    Then the local database takes the archive's version of each record pushed
    (:func:`take_archive_versions`): the cache holds what the archive accepted,
    so ``koa-cal status`` counts nothing of it as not pulled and the next sync
    brings none of it again.

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
        The records added to the archive, as the archive holds them (its
        ``last_updated``).

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
    retracted = local_db.retractions()
    records = [r for r in missing_records(local_db, remote_db, "local", mode)
               if r["id"] not in retracted]  # fmt: skip
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
    # The archive stamps what it accepts with its own clock, never earlier than this.
    newest_before = remote_db.get_last_updated()
    remote_db.add(records)
    logger.info("Pushed %d calibration(s) to %s.", len(records), remote_db.display_url)
    try:
        return take_archive_versions(local_db, remote_db, records, newest_before)
    except KOAError as exc:  # the push itself is done: only the bookkeeping waits
        logger.warning(
            "Pushed %d calibration(s) to %s, but could not read back the archive's versions "
            "(%s); the next `koa-cal sync` brings them.",
            len(records),
            remote_db.display_url,
            exc,
        )
        return records


def take_archive_versions(
    local_db: LocalCalibrationDB,
    remote_db: RemoteCalibrationDB,
    records: Sequence[dict],
    newest_before: str | None,
) -> list[dict]:
    """Store locally the archive's version of records just added to it.

    The archive sets ``last_updated`` (and ``published_at``) of what it accepts.
    Keeping its version here makes the pushed records equal on both sides: a
    status compares equal times, and a sync (changes feed, ``last_updated``
    or ids) finds nothing to bring. Only the records the archive updated after
    ``newest_before`` are read, page by page; one the archive does not list
    there (it changed while the pages were read) is asked for by id.

    Parameters
    ----------
    local_db : LocalCalibrationDB
        The local database.
    remote_db : RemoteCalibrationDB
        The archive client the records were added through.
    records : sequence of dict
        The records just added.
    newest_before : str | None
        The archive's newest ``last_updated`` before the records were added
        (None when it held none).

    Returns
    -------
    list[dict]
        The records as stored locally now, in the order given; a record the
        archive no longer lists is returned as it was given.

    Raises
    ------
    ArchiveError, RemoteUnavailableError, AuthenticationError
        If the archive cannot answer (the records are on the archive then, and
        the next sync brings its versions).

    Examples
    --------
    >>> before = remote.get_last_updated()  # doctest: +SKIP
    >>> remote.add(records)  # doctest: +SKIP
    >>> take_archive_versions(db, remote, records, before)[0]["last_updated"]  # doctest: +SKIP
    '2026-02-12T03:04:05.000'
    """
    wanted = {rec["id"] for rec in records}
    found: dict[str, dict] = {}
    filters = {"last_updated_start": _just_before(newest_before)} if newest_before else {}
    for page in remote_db.iter_query(**filters):
        found.update((rec["id"], rec) for rec in page if rec["id"] in wanted)
    for cal_id in sorted(wanted - found.keys()):
        record = remote_db.query(cal_id=cal_id)
        if record:
            found[cal_id] = record
    versions = [found[rec["id"]] for rec in records if rec["id"] in found]
    # As a sync would store them: the publication time goes beside the record.
    stored = {rec["id"]: rec for rec in local_db.add_validated(versions)} if versions else {}
    return [stored.get(rec["id"], rec) for rec in records]


def _just_before(stamp: str) -> str:
    """The time one millisecond before ``stamp``: ``last_updated_start`` is exclusive.

    Examples
    --------
    >>> _just_before("2026-01-01T00:00:00.000")
    '2025-12-31T23:59:59.999'
    """
    moment = datetime.fromisoformat(stamp) - timedelta(milliseconds=1)
    return moment.isoformat(timespec="milliseconds")


def push_retractions(
    local_db: LocalCalibrationDB, remote_db: RemoteCalibrationDB, origin: str
) -> list[str]:
    """Send the archive the retractions made here of calibrations it holds.

    Only retractions that this cache's ``retract()`` could have made are sent:
    of a calibration in the cache, of the store's ``origin``. Any other (one
    written into a shared database by other means, of a calibration of another
    origin or of none here) stays local, with a warning: a calibration is
    retracted where it was made. Retractions of calibrations the archive lacks
    stay local too (those records are not pushed either). Each retraction sent
    is marked as known to the archive.

    Parameters
    ----------
    local_db : LocalCalibrationDB
        The local database.
    remote_db : RemoteCalibrationDB
        The archive client (protocol 2, with a 'write' token).
    origin : str
        The store's origin: the only one whose calibrations it retracts.

    Returns
    -------
    list of str
        The ids retracted on the archive.

    Raises
    ------
    ArchiveError
        If the archive refuses (an archive of protocol 1 has no retraction:
        the retractions stay local, with a warning).
    AuthenticationError
        401, or 403 for a token without the 'write' scope.

    Examples
    --------
    >>> push_retractions(store.local_db, store.remote_db, store.origin)  # doctest: +SKIP
    ['1b4e28ba-2fa1-4d2b-883f-0016d3cca427']
    """
    waiting = _own_retractions(local_db, local_db.retractions(pushed=False), origin)
    if not waiting:
        return []
    if remote_db.protocol < 2:
        logger.warning(
            "The archive at %s speaks protocol 1, which has no retraction; the %d made here "
            "stay local.",
            remote_db.display_url,
            len(waiting),
        )
        return []
    unknown = {r["id"] for r in missing_records(local_db, remote_db, "local", "id")}
    by_reason: dict[str, list[str]] = {}
    for cal_id, retraction in waiting.items():
        if cal_id not in unknown:
            by_reason.setdefault(retraction["reason"], []).append(cal_id)
    sent: list[str] = []
    for reason, ids in by_reason.items():
        done = remote_db.retract(ids, reason)
        local_db.set_retractions(
            {cal_id: (waiting[cal_id]["retracted_at"], reason) for cal_id in done}, pushed=True
        )
        sent.extend(done)
    if sent:
        logger.info("Sent %d retraction(s) to %s.", len(sent), remote_db.display_url)
    return sent


def _own_retractions(
    local_db: LocalCalibrationDB, waiting: dict[str, dict], origin: str
) -> dict[str, dict]:
    """The retractions of ``waiting`` that ``retract()`` of a store of ``origin`` could make.

    That is, of a calibration in the cache, of that origin. The others are
    named in a warning and left as they are.
    """
    own: dict[str, dict] = {}
    foreign: list[str] = []
    for cal_id, retraction in waiting.items():
        record = local_db.query_id(cal_id)
        if record is not None and str(record.get("origin") or "").upper() == origin.upper():
            own[cal_id] = retraction
        else:
            foreign.append(cal_id)
    if foreign:
        logger.warning(
            "Not sending %d retraction(s) (%s%s): they are of calibrations of another origin "
            "than %s, or not in this cache, so they were not made by retract() here. Retract "
            "a calibration where it was made (koa-archive retract for the archive's); "
            "`koa-cal unretract` removes such a retraction from this cache.",
            len(foreign),
            ", ".join(sorted(foreign)[:3]),
            ", ..." if len(foreign) > 3 else "",
            origin,
        )
    return own

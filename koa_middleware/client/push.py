"""Publishing local calibrations on the archive: each file first, then the records."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..cache.layout import CacheLayout
from ..errors import ArchiveError, CalibrationNotFoundError
from ..hashing import file_digest
from .progress import progress_bar
from .sync import _check_mode, missing_records

if TYPE_CHECKING:
    from ..database.local_database import LocalCalibrationDB
    from .remote_database import RemoteCalibrationDB

logger = logging.getLogger(__name__)

__all__ = ["push_records", "push_retractions"]


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
    remote_db.add(records)
    logger.info("Pushed %d calibration(s) to %s.", len(records), remote_db.display_url)
    return records


def push_retractions(local_db: LocalCalibrationDB, remote_db: RemoteCalibrationDB) -> list[str]:
    """Send the archive the retractions made here of calibrations it holds.

    Retractions of calibrations the archive lacks stay local (those records are
    not pushed either). Each retraction sent is marked as known to the archive.

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
    >>> push_retractions(store.local_db, store.remote_db)  # doctest: +SKIP
    ['1b4e28ba-2fa1-4d2b-883f-0016d3cca427']
    """
    waiting = local_db.retractions(pushed=False)
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

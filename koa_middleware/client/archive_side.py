"""The store's dealings with the archive: connecting, fetching, downloading, syncing.

A mixin of :class:`~koa_middleware.store.CalibrationStore` (it needs the
store's ``config``, ``instrument_name``, ``local_db``, ``layout``,
``remote_db``, ``_cached_files`` and lookups); the work itself is done by
:mod:`.downloads`, :mod:`.sync` and :mod:`.push`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import CalibrationNotFoundError, RemoteUnavailableError
from ..records import is_cal_id

logger = logging.getLogger(__name__)

__all__ = ["ArchiveSide", "check_mode"]

MODES = ("id", "last_updated")


def check_mode(mode: str) -> None:
    """Refuse a sync mode other than ``'id'`` and ``'last_updated'``.

    Raises
    ------
    ValueError
        Naming the modes.
    """
    if mode not in MODES:
        raise ValueError(f"Invalid mode {mode!r}: use 'id' or 'last_updated'.")


class ArchiveSide:
    """Connecting to the archive and exchanging records and files with it."""

    #: What the last sync from the archive did (:class:`koa_middleware.client.sync.SyncReport`:
    #: ``added``, and ``set_aside``, id -> reason), or None before the first one.
    last_sync: Any = None
    #: The ids whose retraction the last push sent to the archive.
    last_pushed_retractions: tuple[str, ...] | list[str] = ()

    def _sync_on_init(self) -> None:
        """Pull new records; whatever goes wrong, warn and work from the cache."""
        # One quick probe first: a pipeline step must not wait out the retries
        # of an archive that is down before it can work from its cache.
        try:
            if not self.remote_db.reachable():
                logger.warning(
                    "Working from the local cache only: the archive at %s cannot be reached.",
                    self.remote_db.display_url,
                )
                return
            self.sync_records_from_remote()
        except Exception as exc:
            logger.warning(
                "Working from the local cache only: the sync from the archive at %s failed "
                "(%s: %s). Fix what it says and run `koa-cal sync` to try again.",
                self.remote_db.display_url,
                type(exc).__name__,
                exc,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )

    def _connect_remote(self) -> Any:
        cfg = self.config
        if not cfg.archive_configured:
            logger.info(
                "Not connecting to %s: no KOA_API_TOKEN or KECK_OBSERVER_EMAIL/"
                "KECK_OBSERVER_PASSWORD is set; working from the local cache.",
                cfg.url,
            )
            return None
        from .remote_database import RemoteCalibrationDB

        # A token from the environment is left for the client to find, so that its errors
        # say where the credential came from.
        token = cfg.token if cfg.source("token") == "argument" else None
        if cfg.max_answer_bytes is None:
            return RemoteCalibrationDB(self.instrument_name, url=cfg.url, token=token)
        return RemoteCalibrationDB(
            self.instrument_name, url=cfg.url, token=token, max_answer_bytes=cfg.max_answer_bytes
        )

    def _fetch_remote_record(self, cal: Any) -> dict:
        described = cal if isinstance(cal, str) else self.record_from(cal).get("id")
        if self.remote_db is None:
            raise CalibrationNotFoundError(
                f"Calibration {described!r} is not in the local cache and no archive is "
                "configured; set KOA_CALIBRATIONS_URL and credentials, or sync first."
            )
        if isinstance(cal, str) and is_cal_id(cal):
            record = self.remote_db.query(cal_id=cal)
        elif isinstance(cal, str):
            record = self.remote_db.query(filename=os.path.basename(cal), fetch="first")
        else:
            record = self.record_from(cal)
            record = self.remote_db.query(cal_id=record.get("id"))
        if not record:
            raise CalibrationNotFoundError(
                f"Calibration {described!r} is neither in the local cache nor on the "
                f"archive at {self.remote_db.url}."
            )
        # The archive client validated its answer: it goes in as it is.
        return self.local_db.add_validated([record])[0]

    def _require_remote(self, action: str) -> Any:
        if self.remote_db is None:
            raise RemoteUnavailableError(
                f"Cannot {action}: no archive is configured. Set KOA_CALIBRATIONS_URL "
                "and KOA_API_TOKEN (or KECK_OBSERVER_EMAIL/KECK_OBSERVER_PASSWORD), and "
                "construct the store with connect_remote=True."
            )
        return self.remote_db

    def _download(self, record: dict, force: bool = False) -> Path:
        from .downloads import fetch_to_cache

        remote = self._require_remote(f"fetch {record['filename']}")
        path = fetch_to_cache(
            remote, record, self.layout, progress=self.config.progress, force=force
        )
        self._cached_files.remember(record, path)
        self._keep_in_bounds(int(record.get("file_size") or 0))
        return path

    def download_calibration_file(self, calibration: dict | str) -> str:
        """Download a calibration's file from the archive into the cache (no local record).

        Most callers want :meth:`get_calibration`.

        Raises
        ------
        RemoteUnavailableError
            If no archive is configured or reachable.
        CalibrationNotFoundError
            If the archive has no such calibration.
        """
        remote = self._require_remote("download a calibration")
        if isinstance(calibration, str):
            record = remote.query(cal_id=calibration)
            if not record:
                raise CalibrationNotFoundError(
                    f"Calibration {calibration} is not on the archive at {remote.url}."
                )
        else:
            record = calibration
        return str(self._download(record))

    def prefetch(self, cals: Iterable[dict | str], workers: int = 8) -> list[str]:
        """Download many calibrations in parallel; return their cached paths in order.

        Records the archive has but the local database lacks are added locally.
        """
        from .downloads import prefetch

        remote = self._require_remote("prefetch calibrations")
        records = []
        for cal in cals:
            record = self._lookup_local(cal)
            records.append(record if record is not None else self._fetch_remote_record(cal))
        # A file a read-only shared cache holds intact is used there, not downloaded.
        shared = [self.readonly_caches.file_for(record, self._cached_files) for record in records]
        wanted = [record for record, found in zip(records, shared, strict=True) if found is None]
        fetched = iter(prefetch(remote, wanted, self.layout, workers=workers))
        paths = [str(found) if found is not None else next(fetched) for found in shared]
        with self.local_db.write_transaction():
            for record, path, found in zip(records, paths, shared, strict=True):
                if found is None:
                    self._cached_files.remember(record, Path(path))
        return paths

    def get_missing_records(self, source: str = "remote", mode: str = "id") -> list[dict]:
        """Records in ``source`` (``'remote'`` or ``'local'``) that the other side lacks."""
        from .sync import missing_records

        check_mode(mode)
        if source not in ("remote", "local"):
            raise ValueError(f"Invalid source {source!r}: use 'remote' or 'local'.")
        remote = self._require_remote("compare with the archive")
        return missing_records(self.local_db, remote, source=source, mode=mode)

    def sync_records_from_remote(self, cals: Any = None, mode: str = "id") -> list[dict]:
        """Add to the local database the archive's records it lacks; return them.

        Parameters
        ----------
        cals : list of records or ids, optional
            Sync only these. ``'id'`` or ``'last_updated'`` here is read as ``mode``.
        mode : {'id', 'last_updated'}
            How to tell what is missing (incremental through the archive's
            changes feed where it offers one). ``'id'`` brings back every
            record whose id the local database lacks.

        Returns
        -------
        list[dict]
            The records added or updated. Records the archive sent that could
            not be stored are set aside (logged, tried again by the next
            sync): see :attr:`last_sync`.
        """
        from .sync import sync_from_archive

        if isinstance(cals, str) and cals in MODES:
            cals, mode = None, cals
        check_mode(mode)
        remote = self._require_remote("sync from the archive")
        report = sync_from_archive(
            self.local_db, remote, cals=cals, mode=mode, progress=self.config.progress
        )
        self.last_sync = report
        return report.added

    def sync_records_to_remote(self, mode: str = "id") -> list[dict]:
        """Upload local calibrations the archive lacks (file first, then record).

        Calibrations retracted here are not uploaded; retractions made here of
        calibrations the archive holds are sent to it
        (:attr:`last_pushed_retractions` lists them).

        Returns
        -------
        list of dict
            The records added to the archive.
        """
        from .push import push_records, push_retractions

        check_mode(mode)
        remote = self._require_remote("push to the archive")
        pushed = push_records(
            self.local_db, remote, self.layout, mode=mode, progress=self.config.progress
        )
        self.last_pushed_retractions = push_retractions(self.local_db, remote)
        return pushed

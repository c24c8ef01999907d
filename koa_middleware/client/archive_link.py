"""The store's link to its archive: fetching records and files into a local cache, syncing.

An :class:`ArchiveLink` holds the archive client (``remote_db``, None when no
archive is configured) and the :class:`~koa_middleware.cache.local_cache.LocalCache`
it fills; the work itself is done by :mod:`.downloads`, :mod:`.sync` and
:mod:`.push`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cache.local_cache import CalibrationRef, LocalCache
from ..errors import CalibrationNotFoundError, KOAError, RemoteUnavailableError

if TYPE_CHECKING:
    from .remote_database import RemoteCalibrationDB
    from .sync import SyncReport

# The modules that talk to an archive (and the HTTP client under them) are imported when an
# archive is connected or first used: a command that works from the cache alone starts
# without them.

logger = logging.getLogger(__name__)

__all__ = ["MODES", "ArchiveLink", "PrefetchReport", "check_mode"]

#: How a sync tells what is missing.
MODES = ("id", "last_updated")


@dataclass(frozen=True)
class PrefetchReport:
    """What a prefetch did.

    Attributes
    ----------
    paths : list of str
        The files' paths, in the order asked (retracted ones skipped).
    downloaded : int
        How many files were downloaded (the others were cached intact).
    skipped_retracted : list of str
        The ids of the retracted calibrations that were not fetched.
    """

    paths: list[str] = field(default_factory=list)
    downloaded: int = 0
    skipped_retracted: list[str] = field(default_factory=list)


def check_mode(mode: str) -> None:
    """Refuse a sync mode other than ``'id'`` and ``'last_updated'``.

    Raises
    ------
    ValueError
        Naming the modes.
    """
    if mode not in MODES:
        raise ValueError(f"Invalid mode {mode!r}: use 'id' or 'last_updated'.")


class ArchiveLink:
    """An archive client and the local cache it fills.

    Parameters
    ----------
    remote_db : RemoteCalibrationDB | None
        The archive client; None works from the cache alone (what needs the
        archive raises :class:`~koa_middleware.errors.RemoteUnavailableError`).
    cache : LocalCache
        The cache records and files go into.
    progress : bool | None
        Show progress bars (None: on a terminal).

    Examples
    --------
    >>> link = ArchiveLink(None, store.cache, progress=False)  # doctest: +SKIP
    >>> link.connected  # doctest: +SKIP
    False
    """

    def __init__(
        self, remote_db: RemoteCalibrationDB | None, cache: LocalCache, progress: bool | None
    ):
        self.remote_db = remote_db
        self.cache = cache
        self.progress = progress
        #: What the last sync from the archive did (``added``, ``set_aside``), or None.
        self.last_sync: SyncReport | None = None
        #: The ids whose retraction the last push sent to the archive.
        self.last_pushed_retractions: Sequence[str] = ()
        #: What the last :meth:`prefetch` did, or None.
        self.last_prefetch: PrefetchReport | None = None
        if remote_db is not None:
            # Connected: what talks to the archive is loaded now, with its client, not in
            # the middle of the first sync or download.
            from . import downloads, push, sync  # noqa: F401

    def __repr__(self) -> str:
        return f"ArchiveLink({getattr(self.remote_db, 'display_url', None)!r})"

    @property
    def connected(self) -> bool:
        """Whether an archive client is configured."""
        return self.remote_db is not None

    def require(self, action: str) -> RemoteCalibrationDB:
        """The archive client, or an error saying how to configure one.

        Raises
        ------
        RemoteUnavailableError
            If no archive is configured.
        """
        if self.remote_db is None:
            raise RemoteUnavailableError(
                f"Cannot {action}: no archive is configured. Set KOA_CALIBRATIONS_URL "
                "and KOA_API_TOKEN (or KECK_OBSERVER_EMAIL/KECK_OBSERVER_PASSWORD), and "
                "construct the store with connect_remote=True."
            )
        return self.remote_db

    def close(self) -> None:
        """Close the archive client."""
        if self.remote_db is not None and hasattr(self.remote_db, "close"):
            self.remote_db.close()

    # -- records -------------------------------------------------------------------

    def fetch_record(self, ref: CalibrationRef) -> dict:
        """The archive's record of ``ref``, stored in the cache's database.

        Raises
        ------
        CalibrationNotFoundError
            If no archive is configured or it has no such calibration.
        """
        if self.remote_db is None:
            raise CalibrationNotFoundError(
                f"Calibration {ref.text!r} is not in the local cache and no archive is "
                "configured; set KOA_CALIBRATIONS_URL and credentials, or sync first."
            )
        if ref.cal_id is not None:
            record = self.remote_db.query(cal_id=ref.cal_id)
        elif ref.filename:
            record = self.remote_db.query(filename=ref.filename, fetch="first")
        else:
            record = None
        if not record:
            raise CalibrationNotFoundError(
                f"Calibration {ref.text!r} is neither in the local cache nor on the "
                f"archive at {self.remote_db.url}."
            )
        # The archive client validated its answer: it goes in as it is.
        return self.cache.db.add_validated([record])[0]

    def record_or_fetch(self, cal: Any) -> dict:
        """The local record of ``cal``, else the archive's (stored in the cache)."""
        ref = CalibrationRef.parse(cal)
        record = self.cache.find(ref)
        return record if record is not None else self.fetch_record(ref)

    # -- files ---------------------------------------------------------------------

    def download(self, record: dict, force: bool = False) -> Path:
        """Fetch ``record``'s file into the cache's own folder (checked, atomic).

        Raises
        ------
        RemoteUnavailableError
            If no archive is configured or reachable.
        """
        remote = self.require(f"fetch {record['filename']}")
        from .downloads import fetch_to_cache

        path = fetch_to_cache(
            remote, record, self.cache.layout, progress=self.progress, force=force
        )
        self.cache.files.remember(record, path)
        return path

    def prefetch(
        self, records: list[dict], workers: int = 8, *, allow_retracted: bool = False
    ) -> list[str]:
        """The paths of ``records``' files, downloading in parallel what no cache holds intact.

        Retracted calibrations are skipped (no download, no path) unless
        ``allow_retracted``; :attr:`last_prefetch` counts them, and one
        warning names them.

        Parameters
        ----------
        records : list of dict
            Local records.
        workers : int
            Parallel downloads.
        allow_retracted : bool
            Keyword only. Fetch retracted calibrations too (each with a warning).

        Returns
        -------
        list of str
            The paths of the calibrations not skipped, in the order of ``records``.
        """
        remote = self.require("prefetch calibrations")
        from .downloads import prefetch

        records, skipped = self._live_for_prefetch(records, allow_retracted)
        found = [self.cache.locate(record) for record in records]
        wanted = [record for record, where in zip(records, found, strict=True) if not where.usable]
        fetched = iter(prefetch(remote, wanted, self.cache.layout, workers=workers))
        paths = [str(where.path) if where.usable else next(fetched) for where in found]
        with self.cache.db.write_transaction():
            for record, path, where in zip(records, paths, found, strict=True):
                if not where.usable:
                    self.cache.files.remember(record, Path(path))
        self.last_prefetch = PrefetchReport(
            paths=paths, downloaded=len(wanted), skipped_retracted=skipped
        )
        return paths

    def _live_for_prefetch(
        self, records: list[dict], allow_retracted: bool
    ) -> tuple[list[dict], list[str]]:
        """The records to prefetch, and the ids of the retracted ones left out."""
        retractions = self.cache.db.retractions()
        retracted = [r for r in records if r["id"] in retractions]
        if not retracted:
            return records, []
        if allow_retracted:
            for record in retracted:
                self.cache.lifecycle.check_retraction(record, allow=True)  # warns
            return records, []
        skipped = [r["id"] for r in retracted]
        logger.warning(
            "Skipped %d retracted calibration(s), not fetched: %s. Set KOA_ALLOW_RETRACTED=1 "
            "(allow_retracted=True) to fetch them anyway.",
            len(skipped),
            ", ".join(
                f"{r['id']} ({r['filename']}: {retractions[r['id']]['reason']})"
                for r in retracted[:10]
            )
            + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""),
        )
        return [r for r in records if r["id"] not in retractions], skipped

    # -- syncing ---------------------------------------------------------------------

    def sync_on_open(self) -> None:
        """Pull new records; whatever goes wrong, warn and work from the cache."""
        # One quick probe first: a pipeline step must not wait out the retries
        # of an archive that is down before it can work from its cache.
        remote = self.require("sync from the archive")
        try:
            if not remote.reachable():
                logger.warning(
                    "Working from the local cache only: the archive at %s cannot be reached.",
                    remote.display_url,
                )
                return
            self.pull()
        except Exception as exc:
            logger.warning(
                "Working from the local cache only: the sync from the archive at %s failed "
                "(%s: %s). Fix what it says and run `koa-cal sync` to try again.",
                remote.display_url,
                type(exc).__name__,
                exc,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )

    def pull(self, cals: Any = None, mode: str = "id") -> list[dict]:
        """Add the archive's records the cache lacks (or only ``cals``); return them."""
        if isinstance(cals, str) and cals in MODES:
            cals, mode = None, cals
        check_mode(mode)
        remote = self.require("sync from the archive")
        from .sync import sync_from_archive

        self.last_sync = sync_from_archive(
            self.cache.db, remote, cals=cals, mode=mode, progress=self.progress
        )
        return self.last_sync.added

    def push(self, mode: str = "id") -> list[dict]:
        """Upload what the archive lacks (files, then records), then the retractions made here."""
        check_mode(mode)
        remote = self.require("push to the archive")
        from .push import push_records, push_retractions

        pushed = push_records(
            self.cache.db, remote, self.cache.layout, mode=mode, progress=self.progress
        )
        self.last_pushed_retractions = push_retractions(
            self.cache.db, remote, origin=self.cache.lifecycle.origin
        )
        return pushed

    def missing(self, source: str = "remote", mode: str = "id") -> list[dict]:
        """Records in ``source`` (``'remote'`` or ``'local'``) that the other side lacks."""
        check_mode(mode)
        if source not in ("remote", "local"):
            raise ValueError(f"Invalid source {source!r}: use 'remote' or 'local'.")
        remote = self.require("compare with the archive")
        from .sync import missing_records

        return missing_records(self.cache.db, remote, source=source, mode=mode)

    def only_here(self, records: Iterable[dict], origin: str) -> set[str]:
        """Ids of ``origin`` among ``records`` that exist nowhere else (all, without an archive).

        What a prune must keep; an archive that cannot be asked keeps them all.
        """
        own = {r["id"] for r in records if str(r.get("origin") or "").upper() == origin}
        if not own or self.remote_db is None:
            return own
        try:
            missing = self.missing(source="local")
        except (KOAError, OSError) as exc:
            logger.warning("Keeping every file of origin %s: %s", origin, exc)
            return own
        return own & {r["id"] for r in missing}

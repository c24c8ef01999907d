"""CalibrationStore: the one facade pipelines use.

The store is built from parts it holds as attributes, each given what it needs
in ``__init__``:

- :attr:`~CalibrationStore.cache`, a :class:`~koa_middleware.cache.local_cache.LocalCache`:
  the folders, the database (:attr:`~CalibrationStore.local_db`), the files, the
  read-only caches and the lifecycle (retractions, what selection sees);
- :attr:`~CalibrationStore.archive`, an :class:`~koa_middleware.client.archive_link.ArchiveLink`:
  the archive client (:attr:`~CalibrationStore.remote_db`) and what it brings
  into the cache;
- :attr:`~CalibrationStore.lookup`, :attr:`~CalibrationStore.bounds` and
  :attr:`~CalibrationStore.manifests`: lookups, size bounds, run manifests.

Its only base class is :class:`~koa_middleware.cache.registration_steps.RegistrationSteps`,
the steps of registration that pipelines override. Each of the reference's
methods delegates to a part in a line or two; the store holds no SQL and no HTTP.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .cache.lifecycle import AsOfStore, all_retracted_message
from .cache.local_cache import CalibrationRef, LocalCache
from .cache.lookup import CacheLookup
from .cache.prune import CacheBounds, PruneReport
from .cache.registration import (
    complete_cached_file_record,
    register_model,
    warn_if_not_a_calibration,
)
from .cache.registration_steps import RegistrationSteps
from .cache.staging import Staging
from .cache.versions import find_version_issues
from .client.archive_link import ArchiveLink
from .client.connect import connect_archive
from .config import resolve_config
from .database.local_database import LocalCalibrationDB  # noqa: F401  (the reference's name)
from .datamodel_protocol import SupportsCalibrationModelIO, record_of
from .errors import ArchiveError, CalibrationNotFoundError, ChecksumMismatchError
from .manifest import ManifestRecorder, ManifestReplay, RunManifests, check_pinned
from .profiles import InstrumentProfile, load_profile
from .records import new_cal_id, normalize_timestamp
from .selector_base import CalibrationSelector
from .utils import (  # noqa: F401  (names the reference's module carries)
    datetime_to_isot_ms,
    generate_md5_file,
    get_env_var_bool,
    is_valid_uuid,
)

logger = logging.getLogger(__name__)

__all__ = ["CalibrationStore"]


def __getattr__(name: str) -> Any:
    # The reference's module carries RemoteCalibrationDB too; it is imported on first use,
    # so that a store working from its cache alone starts without the HTTP client.
    if name == "RemoteCalibrationDB":
        from .client.remote_database import RemoteCalibrationDB

        globals()[name] = RemoteCalibrationDB
        return RemoteCalibrationDB
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class CalibrationStore(RegistrationSteps):
    """Manage the storage, retrieval and synchronization of calibrations.

    Parameters
    ----------
    instrument_name : str | None
        The instrument (``'hispec'``, ``'liger'``, ...). None reads
        ``KOA_INSTRUMENT_NAME``.
    cache_dir : str | None
        The cache folder. None reads ``KOA_CALIBRATION_CACHE``. Required either way.
    local_database_filename : str | None
        File name of the SQLite database in ``cache_dir/database`` (or
        ``':memory:'``). None reads ``KOA_LOCAL_CALIBRATION_DATABASE_FILENAME``,
        else ``<instrument>_calibrations.db``.
    connect_remote : bool
        Connect to the archive (``KOA_CALIBRATIONS_URL``) when credentials or an
        explicit URL are configured.
    use_cached : bool | None
        Serve cached files; False fetches fresh copies from the archive. None
        reads ``KOA_USE_CACHED_CALIBRATIONS`` (default true).
    origin : str | None
        Origin of calibrations registered here. None reads
        ``KOA_CALIBRATION_ORIGIN``, else ``'LOCAL'``.
    sync_on_init : bool
        Pull new records from the archive on construction (when connected).
    url : str | None
        Keyword only, as every parameter below. The archive's URL. None reads
        ``KOA_CALIBRATIONS_URL``, else the Keck calibrations API.
    token : str | None
        Bearer token for the archive. None reads ``KOA_API_TOKEN``; without
        one, the Keck observer login (``KECK_OBSERVER_EMAIL``,
        ``KECK_OBSERVER_PASSWORD``) is used when set.
    manifest : str | os.PathLike | None
        A run manifest to replay (:mod:`koa_middleware.manifest`): each selection
        it recorded returns the pinned calibration, fetched and MD5-checked.
    manifest_fallback : bool
        When replaying, select as usual for inputs the manifest does not know
        instead of raising :class:`~koa_middleware.errors.ManifestError`.
    create : bool
        Create the cache's folders and database when missing. False creates
        nothing: without a database here, the records of the read-only caches
        (``KOA_CALIBRATION_CACHE_READONLY``) are read into memory (what read
        commands such as ``koa-cal status`` and ``explain`` do).

    Attributes
    ----------
    cache : LocalCache
        The local cache: folders, database, files, read-only caches, lifecycle.
    archive : ArchiveLink
        The archive client (``remote_db``) and what it brings into the cache.
    lookup : CacheLookup
        Lookups by id, file name, version family and MD5.
    bounds : CacheBounds
        Keeps the cache's files within ``KOA_CACHE_MAX_SIZE``.
    manifests : RunManifests
        The run manifest replayed, and those being recorded.

    Raises
    ------
    ConfigurationError
        If the instrument or cache folder is set nowhere.

    Examples
    --------
    >>> import tempfile
    >>> store = CalibrationStore("hispec", tempfile.mkdtemp(), connect_remote=False)
    >>> store.query(cal_type="dark")
    []
    >>> store.close()
    """

    def __init__(
        self,
        instrument_name: str | None = None,
        cache_dir: str | None = None,
        local_database_filename: str | None = None,
        connect_remote: bool = True,
        use_cached: bool | None = None,
        origin: str | None = None,
        sync_on_init: bool = True,
        *,
        url: str | None = None,
        token: str | None = None,
        manifest: str | os.PathLike | None = None,
        manifest_fallback: bool = False,
        create: bool = True,
    ):
        self.config = resolve_config(
            instrument_name, cache_dir, local_database_filename, use_cached, origin, url, token
        )
        replay = ManifestReplay(manifest, manifest_fallback) if manifest is not None else None
        self.instrument_name: str = self.config.instrument_name
        self.origin: str = self.config.origin
        self.use_cached: bool = self.config.use_cached
        #: The instrument profile in force (:func:`koa_middleware.profiles.load_profile`):
        #: version families, FITS header map, calibration types; ``profile.source``
        #: says where it came from.
        self.profile: InstrumentProfile = load_profile(self.instrument_name)
        self.cache = LocalCache.open(self.config, create=create)
        self.layout = self.cache.layout
        self.local_db = self.cache.db
        #: The read-only caches searched first (``KOA_CALIBRATION_CACHE_READONLY``).
        self.readonly_caches = self.cache.readonly
        self.cache_dir = str(self.layout.root)
        self.database_dir = os.path.join(str(self.layout.database_dir), "")
        self.staging = Staging(self.layout, self.local_db)
        self._family_indexes: set[tuple[str, ...]] = set()
        self._closed = False
        self.cache.refresh()
        if self.cache.writable:
            self.layout.recover_pending(self._record_owns)
            self.layout.clean_temp()
        remote_db = connect_archive(self.config) if connect_remote else None
        self.archive = ArchiveLink(remote_db, self.cache, progress=self.config.progress)
        self.lookup = CacheLookup(self.cache, self.get_version_family_values, self.origin)
        self.bounds = CacheBounds(
            self.cache,
            self.config.cache_max_size,
            functools.partial(self.archive.only_here, origin=self.origin),
        )
        self.manifests = RunManifests(self.instrument_name, self._archive_url(), replay)
        if remote_db is not None and sync_on_init:
            self.archive.sync_on_open()

    def __repr__(self) -> str:
        return (
            f"CalibrationStore(instrument_name={self.instrument_name!r}, "
            f"cache_dir={self.cache_dir!r}, origin={self.origin!r}, "
            f"remote={getattr(self.remote_db, 'url', None)!r})"
        )

    def __enter__(self) -> CalibrationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the local database and the archive client. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self.staging.close()
        self.cache.close()
        self.archive.close()

    # -- the parts, under the reference's names --------------------------------------

    @property
    def remote_db(self) -> Any:
        """The archive client (:class:`~koa_middleware.client.remote_database.RemoteCalibrationDB`),
        or None when no archive is configured."""
        return self.archive.remote_db

    @remote_db.setter
    def remote_db(self, remote_db: Any) -> None:
        self.archive.remote_db = remote_db
        self.manifests.archive_url = self._archive_url()

    @property
    def last_sync(self) -> Any:
        """What the last sync from the archive did (``added``, ``set_aside``), or None."""
        return self.archive.last_sync

    @property
    def last_pushed_retractions(self) -> Sequence[str]:
        """The ids whose retraction the last push sent to the archive."""
        return self.archive.last_pushed_retractions

    def _archive_url(self) -> str | None:
        """The archive's URL as a manifest records it (shown form: no secrets)."""
        remote = self.archive.remote_db
        if remote is not None:
            return getattr(remote, "display_url", None)
        return self.config.url if self.config.archive_configured else None

    # -- registering -------------------------------------------------------

    def register_calibration(
        self,
        cal: SupportsCalibrationModelIO,
        origin: str | None = None,
        new_version: bool = False,
    ) -> tuple[str, dict]:
        """Save a calibration into the cache and record it in the local database.

        Assigns ``id`` (when missing), ``origin``, ``cal_version``,
        ``last_updated``, ``file_md5`` and ``file_size``; the version is allocated
        and the record inserted in one write transaction, so concurrent processes
        never share a version. The model sees its version before ``save()`` runs.

        Parameters
        ----------
        cal : SupportsCalibrationModelIO
            The calibration model.
        origin : str | None
            Origin to register under; else the record's, else the store's.
        new_version : bool
            If False, an existing calibration of the same version family and
            origin is returned instead of registering a new version. With the
            same bytes (MD5), its file is put back if the cache lost it; with
            other bytes, nothing is registered and a WARNING names both files.

        Returns
        -------
        tuple[str, dict]
            The cached file's path (it exists) and the stored record.

        Raises
        ------
        InvalidRecordError
            If the record breaks a rule; nothing is stored.
        CalibrationNotFoundError
            If the family's calibration lost its file and the model's bytes
            differ from it (restore it, or pass ``new_version=True``).
        VersionLimitError
            If the family already holds version 999.
        CalibrationSaveError
            If ``save()`` raises or writes no file; nothing is stored.
        """
        record = record_of(cal)
        if record.get("id") is None:
            record["id"] = new_cal_id()
        origin = self._registration_origin(origin, record)
        warn_if_not_a_calibration(record, self.profile.cal_types)
        family = self.get_version_family_values(record)
        self._ensure_family_index(family)
        return register_model(
            self,
            cal,
            db=self.local_db,
            layout=self.layout,
            cal_id=record["id"],
            family=family,
            origin=origin,
            new_version=new_version,
        )

    def _record_owns(self, cal_id: str, filename: str) -> bool:
        return (
            self.local_db.query_id(cal_id) is not None
            or self.local_db.query_filename(filename) is not None
        )

    # -- getting calibrations ----------------------------------------------

    def get_calibration(
        self, cal: dict | str, *, allow_retracted: bool | None = None
    ) -> tuple[str, dict]:
        """The local path and record of a calibration, downloading what is missing.

        Parameters
        ----------
        cal : dict | str
            A record, an id, or a path or file name in the cache.
        allow_retracted : bool | None
            Keyword only. Serve a retracted calibration (with a warning). None
            reads ``KOA_ALLOW_RETRACTED`` (default false).

        Returns
        -------
        tuple[str, dict]
            The file's absolute path (in the cache, or in place in a read-only
            cache) and the local record.

        Raises
        ------
        CalibrationNotFoundError
            If the calibration is neither in the cache nor on the archive.
        RetractedCalibrationError
            If the calibration was retracted (and retracted ones are not allowed).
        RemoteUnavailableError
            If the file must be fetched and no archive is reachable.
        ChecksumMismatchError
            If the cached file no longer matches its record (changed bytes, a
            link in its place) and no archive is configured to fetch it again.

        Notes
        -----
        A cached file whose size, modification and change times and inode are
        those seen when it was placed is served without reading it; any other
        is checked against the record's MD5 first, and fetched again when it
        differs.
        """
        with self.manifests.outer_call() as outer:
            path, record = self._get_calibration(CalibrationRef.parse(cal), allow_retracted)
        self.cache.files.note_use(record["id"])
        if outer:
            self.manifests.note("get_calibration", cal, None, record)
        return path, record

    def _get_calibration(self, ref: CalibrationRef, allow: bool | None) -> tuple[str, dict]:
        self.cache.refresh()
        record = self.cache.find(ref)
        if record is None:
            record = self.archive.fetch_record(ref)
        self.cache.lifecycle.check_retraction(record, allow)
        if not self.use_cached and self.archive.connected:
            return self._fetch_fresh(record), record
        where = self.cache.locate(record)
        if where.usable:
            return str(where.path), record
        if where.present and not self.archive.connected:
            raise ChecksumMismatchError(
                f"The cached file {where.path} {where.problem}; it is not served. Run "
                "`koa-cal verify --repair` with an archive configured to fetch a fresh copy "
                "(or register the calibration again)."
            )
        if where.present:
            logger.warning(
                "The cached file %s %s; fetching a fresh copy.", where.path, where.problem
            )
        return str(self._download(record, force=where.present)), record

    def _fetch_fresh(self, record: dict) -> str:
        """A fresh copy from the archive (``use_cached=False``), else an intact cached one."""
        path = self.layout.path_for(record["filename"])
        present = os.path.lexists(path)
        try:
            return str(self._download(record, force=present))
        except ArchiveError as exc:
            if not present or exc.status != 404 or not self.cache.locate(record).usable:
                raise
            logger.warning(
                "%s is not on the archive (%s); using the cached copy.", record["filename"], exc
            )
            return str(path)

    def _download(self, record: dict, force: bool = False) -> Path:
        path = self.archive.download(record, force=force)
        self.bounds.added(int(record.get("file_size") or 0))
        return path

    def select_and_get_calibration(
        self, input: Any, selector: CalibrationSelector, **kwargs: Any
    ) -> tuple[str, dict]:
        """Select the best calibration for ``input`` with ``selector``, then get it.

        Returns
        -------
        tuple[str, dict]
            The cached file's path and the selected record.

        Raises
        ------
        CalibrationNotFoundError
            If the selector finds nothing.

        Examples
        --------
        >>> # path, record = store.select_and_get_calibration(frame, DarkSelector())
        """
        self.cache.refresh()
        return self._select_and_get(input, selector, self.selection_db(), kwargs)

    def _select_and_get(
        self, input: Any, selector: Any, db: Any, kwargs: dict, allow_retracted: bool = False
    ) -> tuple[str, dict]:
        """Select among the records ``db`` shows (a run's pin first), get, record."""
        with self.manifests.outer_call() as outer:
            result = self._replayed(input, selector)
            if result is None:
                record = selector.select(input, db, **kwargs)
                if record is None:
                    raise self._not_found(input, selector, kwargs, allow_retracted)
                result = self.get_calibration(record, allow_retracted=allow_retracted)
        if outer:
            self.manifests.note("select_and_get_calibration", input, selector, result[1])
        return result

    def _not_found(
        self, input: Any, selector: Any, kwargs: dict, allow_retracted: bool
    ) -> CalibrationNotFoundError:
        """The error for a selection that found nothing: all retracted, or none at all."""
        # As of a past time (allow_retracted), what is retracted now says nothing.
        lifecycle = self.cache.lifecycle
        retracted = (
            []
            if allow_retracted
            else lifecycle.retracted_candidates(input, selector, only_if_all=True, **kwargs)
        )
        if retracted:
            total = selector.count_candidates(input, lifecycle.db, **kwargs)
            return CalibrationNotFoundError(
                f"{selector!r} found no calibration for input {_describe(input)}: "
                + all_retracted_message(retracted, total)
            )
        return CalibrationNotFoundError(
            f"{selector!r} found no calibration for input {_describe(input)}; "
            "check the local database (koa-cal query) or sync from the archive."
        )

    def _replayed(self, input: Any, selector: Any) -> tuple[str, dict] | None:
        """The pinned calibration's path and record when replaying a run, else None."""
        chosen = self.manifests.pinned(input, selector)
        if chosen is None:
            return None
        # A calibration retracted since is what the run used: served, with a warning.
        path, record = self.get_calibration(chosen["id"], allow_retracted=True)
        check_pinned(chosen, record, self.manifests.replay.path)
        return path, record

    def download_calibration_file(self, calibration: dict | str) -> str:
        """Download a calibration's file from the archive into the cache (no local record).

        Most callers want :meth:`get_calibration`. A retracted calibration is
        downloaded with a warning that says when and why it was retracted.

        Raises
        ------
        RemoteUnavailableError
            If no archive is configured or reachable.
        CalibrationNotFoundError
            If the archive has no such calibration.
        """
        remote = self.archive.require("download a calibration")
        record = calibration
        if isinstance(calibration, str):
            record = remote.query(cal_id=calibration)
            if not record:
                raise CalibrationNotFoundError(
                    f"Calibration {calibration} is not on the archive at {remote.url}."
                )
        self._warn_if_retracted(record)
        return str(self._download(record))

    def _warn_if_retracted(self, record: dict) -> None:
        """Warn that ``record`` was retracted (by the archive's answer or this cache's)."""
        when, reason = record.get("retracted_at"), record.get("retract_reason")
        if not when:
            self.cache.refresh()
            known = self.local_db.retraction(record["id"])
            when, reason = (known["retracted_at"], known["reason"]) if known else (None, None)
        if when:
            logger.warning(
                "Downloading %s (id %s), a calibration retracted on %s: %s. Selection never "
                "chooses it; use it only to reproduce an old reduction.",
                record.get("filename"),
                record["id"],
                when,
                reason or "no reason given",
            )

    def prefetch(
        self,
        cals: Iterable[dict | str],
        workers: int = 8,
        *,
        allow_retracted: bool | None = None,
    ) -> list[str]:
        """Download many calibrations in parallel; return their paths in order.

        Records the archive has but the local database lacks are added locally;
        a file a read-only cache holds intact is used there, not downloaded.
        Retracted calibrations are skipped, with one warning naming them (no
        path is returned for them): :attr:`last_prefetch` counts them.

        Parameters
        ----------
        cals : iterable of dict or str
            Records or ids.
        workers : int
            Parallel downloads.
        allow_retracted : bool | None
            Keyword only. Fetch retracted calibrations too, each with a
            warning. None reads ``KOA_ALLOW_RETRACTED`` (default false).
        """
        self.archive.require("prefetch calibrations")
        self.cache.refresh()
        records = [self.archive.record_or_fetch(cal) for cal in cals]
        if allow_retracted is None:
            allow_retracted = self.cache.lifecycle.allow_retracted
        return self.archive.prefetch(records, workers=workers, allow_retracted=allow_retracted)

    @property
    def last_prefetch(self) -> Any:
        """What the last :meth:`prefetch` did (``paths``, ``downloaded``,
        ``skipped_retracted``), or None."""
        return self.archive.last_prefetch

    # -- looking up --------------------------------------------------------

    def calibration_record_in_cache(
        self, cal: dict | str | SupportsCalibrationModelIO, mode: str = "id"
    ) -> dict | None:
        """The local record matching ``cal``, or None.

        Parameters
        ----------
        cal : dict | str | SupportsCalibrationModelIO
            An id, a file path, a record or a model.
        mode : {'id', 'version-family', 'md5'}
            Match by id (or file name for a path), by version family (the highest
            version of the family and origin), or by the file's MD5.

        Examples
        --------
        >>> store.calibration_record_in_cache(cal_id)["filename"]  # doctest: +SKIP
        'dark_001.fits'
        """
        return self.lookup.matching(cal, mode)

    def _calibration_record_in_cache_id(self, calibration: Any) -> dict | None:
        """The local record with the id of ``calibration`` (the reference's helper)."""
        return self.lookup.by_id(calibration)

    def _calibration_record_in_cache_filename(self, cal: Any) -> dict | None:
        """The local record with the file name of ``cal`` (the reference's helper)."""
        return self.lookup.by_filename(cal)

    def _calibration_record_in_cache_version_family(
        self, cal: Any, include_version: bool = False
    ) -> list[dict] | dict | None:
        """Every local record of ``cal``'s version family (the reference's helper)."""
        return self.lookup.by_version_family(cal, include_version)

    def _calibration_record_in_cache_md5(self, cal: Any) -> dict | None:
        """The first local record with ``cal``'s MD5 (the reference's helper)."""
        return self.lookup.by_md5(cal)

    def calibration_file_in_cache(
        self, cal: dict | str | SupportsCalibrationModelIO, filename: str | None = None
    ) -> str | None:
        """The cached file's absolute path if the file is present, else None."""
        return self.lookup.calibration_file_in_cache(cal, filename)

    def get_missing_local_files(self) -> list[dict]:
        """Records whose file is in neither the cache nor one of its read-only caches."""
        return self.cache.missing_files()

    # -- querying ----------------------------------------------------------

    def _database_for(self, source: str | None, default: str) -> Any:
        source = (source or default).lower()
        if source == "local":
            return self.local_db
        if source == "remote":
            return self.archive.require("query the archive")
        raise ValueError(f"Invalid source {source!r}: use 'local' or 'remote'.")

    def query(self, source: str | None = None, **kwargs: Any) -> list[dict] | dict | None:
        """Query the local (default) or remote database; see ``LocalCalibrationDB.query``."""
        self.cache.refresh()
        return self._database_for(source, "local").query(**kwargs)

    def get_last_updated(self, source: str | None = None, **kwargs: Any) -> str | None:
        """Newest ``last_updated`` of the remote database if connected, else the local one."""
        default = "remote" if self.archive.connected else "local"
        return self._database_for(source, default).get_last_updated(**kwargs)

    # -- the archive -------------------------------------------------------

    def get_missing_records(self, source: str = "remote", mode: str = "id") -> list[dict]:
        """Records in ``source`` (``'remote'`` or ``'local'``) that the other side lacks."""
        return self.archive.missing(source, mode)

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
        return self.archive.pull(cals, mode)

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
        return self.archive.push(mode)

    def sync_records_from_cached_files(
        self, cals: SupportsCalibrationModelIO | dict | Sequence[Any]
    ) -> list[dict]:
        """Record in the local database calibrations whose files are (meant to be) in the cache.

        A record without a version is prepared as by registration
        (:meth:`_prepare_cal_record` with origin ``'LOCAL'``, as the reference
        does); every record gets the cached file's ``file_md5`` and ``file_size``.
        Versions are allocated one after the other, so records of one family
        get ``001``, ``002``, ...

        A record whose file is not in ``calibrations/<instrument>`` is added all
        the same, as the reference adds it, with a WARNING naming the file and
        that folder: ``koa-cal status`` and ``verify`` list it as not
        downloaded (not as damage) until the file is copied there. Its
        ``file_md5`` and ``file_size`` are those of the model's own file when
        the model keeps its path (``_filepath``), else left as the record has them.

        Returns
        -------
        list[dict]
            The records as stored.

        Raises
        ------
        ChecksumMismatchError
            If a file's MD5 differs from the record's ``file_md5``; nothing is added.
        InvalidRecordError
            If a record has no file name, or breaks another rule; nothing is added.
        """
        if isinstance(cals, dict) or not isinstance(cals, Sequence):
            cals = [cals]
        # Hash the files before taking the write lock, which other processes wait for.
        completed = [
            complete_cached_file_record(self.layout, record_of(cal), "LOCAL", cal) for cal in cals
        ]
        added = []
        with self.local_db.write_transaction():
            for cal, record in zip(cals, completed, strict=True):
                if record.get("cal_version") is None:
                    prepared = self._prepare_cal_record(cal, origin="LOCAL")
                    record = {**record, **prepared}
                added.append(self.local_db.add(record))
        return added

    # -- lifecycle ---------------------------------------------------------

    def selection_db(self, as_of: str | None = None) -> Any:
        """The database a selector is handed: live records, or those of ``as_of``.

        See :meth:`Lifecycle.selection_db <koa_middleware.cache.lifecycle.Lifecycle.selection_db>`.

        Examples
        --------
        >>> store.selection_db().query(cal_type="dark")  # doctest: +SKIP
        """
        return self.cache.lifecycle.selection_db(as_of)

    def as_of(self, when: str) -> AsOfStore:
        """A view of the store in which selection sees the records of time ``when``.

        Only records the archive had published by ``when`` (or, for records
        made here, updated by then) and had not retracted by then are chosen;
        publication and retraction times come from the records, not from this
        machine's clock.

        Examples
        --------
        >>> past = store.as_of("2026-03-01T00:00:00")  # doctest: +SKIP
        >>> path, record = past.select_and_get_calibration(frame, DarkSelector())  # doctest: +SKIP
        """
        when = normalize_timestamp(when, "as_of")
        select_and_get = functools.partial(self._select_and_get, allow_retracted=True)
        return AsOfStore(self.selection_db(when), when, select_and_get)

    def explain(self, input: Any, selector: Any, as_of: str | None = None, **kwargs: Any) -> dict:
        """What ``selector`` chooses for ``input`` and why, with the retracted candidates.

        See :meth:`Lifecycle.explain <koa_middleware.cache.lifecycle.Lifecycle.explain>`.
        """
        self.cache.refresh()
        return self.cache.lifecycle.explain(input, selector, as_of, **kwargs)

    def retract(self, ids: Iterable[str] | str, reason: str) -> list[str]:
        """Withdraw calibrations registered here; see :meth:`Lifecycle.retract
        <koa_middleware.cache.lifecycle.Lifecycle.retract>`."""
        return self.cache.lifecycle.retract(ids, reason)

    def unretract(self, ids: Iterable[str] | str) -> list[str]:
        """Make retracted calibrations of this store's origin selectable again."""
        return self.cache.lifecycle.unretract(ids)

    def remove(self, ids: Iterable[str] | str, force: bool = False) -> list[dict]:
        """Delete calibrations of this store's origin, records and files; see
        :meth:`Lifecycle.remove <koa_middleware.cache.lifecycle.Lifecycle.remove>`."""
        return self.cache.lifecycle.remove(ids, force=force)

    def prune(self, max_size: int | str | None = None) -> PruneReport:
        """Remove the least recently used files until the cache's files fit in ``max_size``.

        Records stay (a removed file is fetched again when asked for); files in
        use by a running process, and files of this store's origin that the
        archive lacks, are never removed. See :mod:`koa_middleware.cache.prune`.

        Parameters
        ----------
        max_size : int | str | None
            Bytes, or a size such as ``'50GiB'``; None reads ``KOA_CACHE_MAX_SIZE``.

        Raises
        ------
        ConfigurationError
            If no size is given or configured, or it cannot be read.

        Examples
        --------
        >>> store.prune("50GiB").removed  # doctest: +SKIP
        """
        return self.bounds.prune(max_size)

    def layout_size(self) -> int:
        """Bytes taken by the files of the instrument's calibrations in the cache."""
        return self.bounds.size()

    # -- run manifests -----------------------------------------------------

    @contextmanager
    def record_manifest(self, path: str | os.PathLike) -> Iterator[ManifestRecorder]:
        """Record every calibration the block selects or gets into the manifest ``path``.

        The manifest is written when the block ends, also when it raised, so
        that a failed run still says what it used. Replay it with
        ``CalibrationStore(..., manifest=path)``.

        Yields
        ------
        ManifestRecorder
            The recorder (its ``entries`` grow as the block runs).

        Examples
        --------
        >>> with store.record_manifest("run.json"):  # doctest: +SKIP
        ...     path, record = store.select_and_get_calibration("sci.fits", DarkSelector())
        """
        with self.manifests.record(path) as recorder:
            yield recorder

    # -- checks ------------------------------------------------------------

    def detect_version_issues(self) -> list[dict]:
        """Problems in version numbering: duplicates, gaps and invalid versions.

        Returns
        -------
        list[dict]
            One dict per problem with ``issue`` (``'duplicate'``, ``'gap'`` or
            ``'invalid'``), ``origin``, ``family``, ``cal_version`` and ``ids``.
            Empty when every family runs ``001``, ``002``, ... without repeats.
        """
        return find_version_issues(self.local_db.rows, self.get_version_family_values)


def _describe(input: Any) -> str:
    text = repr(input)
    return text if len(text) <= 200 else text[:197] + "..."

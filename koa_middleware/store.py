"""CalibrationStore: the one facade pipelines use.

It orchestrates the local database (:mod:`koa_middleware.database.local_database`),
the archive client (:mod:`koa_middleware.client.remote_database`), the cache
files (:mod:`koa_middleware.cache.layout`, :mod:`koa_middleware.client.downloads`) and
synchronization (:mod:`koa_middleware.client.sync`); it holds no SQL and no HTTP of
its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from .cache.check import CachedFiles, lstat_or_none
from .cache.layout import CacheLayout
from .cache.lifecycle import CacheBounds, Lifecycle
from .cache.lookup import CacheLookup
from .cache.readonly import ReadOnlyCaches
from .cache.registration import (
    complete_cached_file_record,
    register_model,
    warn_if_not_a_calibration,
)
from .cache.registration_steps import RegistrationSteps
from .cache.staging import Staging
from .cache.versions import find_version_issues
from .client.archive_side import ArchiveSide
from .config import resolve_config
from .database.local_database import LocalCalibrationDB
from .datamodel_protocol import SupportsCalibrationModelIO
from .errors import (
    ArchiveError,
    CalibrationNotFoundError,
    ChecksumMismatchError,
)
from .manifest import RunManifests
from .profiles import InstrumentProfile, load_profile
from .records import new_cal_id
from .selector_base import CalibrationSelector

logger = logging.getLogger(__name__)

__all__ = ["CalibrationStore"]


class CalibrationStore(
    RegistrationSteps, CacheLookup, ArchiveSide, RunManifests, Lifecycle, CacheBounds
):
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
        The archive's URL. None reads ``KOA_CALIBRATIONS_URL``, else the Keck
        calibrations API.
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
        url: str | None = None,
        token: str | None = None,
        manifest: str | os.PathLike | None = None,
        manifest_fallback: bool = False,
    ):
        self.config = resolve_config(
            instrument_name, cache_dir, local_database_filename, use_cached, origin, url, token
        )
        self._open_manifest(manifest, manifest_fallback)
        self.instrument_name: str = self.config.instrument_name
        self.origin: str = self.config.origin
        self.use_cached: bool = self.config.use_cached
        #: The instrument profile in force (:func:`koa_middleware.profiles.load_profile`):
        #: version families, FITS header map, calibration types; ``profile.source``
        #: says where it came from.
        self.profile: InstrumentProfile = load_profile(self.instrument_name)
        self.layout = CacheLayout(self.config.cache_dir, self.instrument_name)
        self.layout.create()
        self.cache_dir = str(self.layout.root)
        self.database_dir = os.path.join(str(self.layout.database_dir), "")
        filename = self.config.local_database_filename
        db_path = filename if filename == ":memory:" else self.layout.database_dir / filename
        self.local_db = LocalCalibrationDB(db_path, self.config.table_name)
        self.staging = Staging(self.layout, self.local_db)
        self._cached_files = CachedFiles(self.local_db)
        self._family_indexes: set[tuple[str, ...]] = set()
        self._closed = False
        #: The read-only caches searched first (``KOA_CALIBRATION_CACHE_READONLY``).
        self.readonly_caches = ReadOnlyCaches.from_config(self.config, self.layout)
        self.readonly_caches.refresh(self.local_db)
        self.layout.recover_pending(self._record_owns)
        self.layout.clean_temp()
        self.remote_db = self._connect_remote() if connect_remote else None
        if self.remote_db is not None and sync_on_init:
            self._sync_on_init()

    def __repr__(self) -> str:
        remote = getattr(self.remote_db, "url", None)
        return (
            f"CalibrationStore(instrument_name={self.instrument_name!r}, "
            f"cache_dir={self.cache_dir!r}, origin={self.origin!r}, remote={remote!r})"
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
        self._cached_files.save()
        self.staging.close()
        self._close_selection_views()
        self.local_db.close()
        if self.remote_db is not None and hasattr(self.remote_db, "close"):
            self.remote_db.close()

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
        record = self.record_from(cal)
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
        self, cal: dict | str, allow_retracted: bool | None = None
    ) -> tuple[str, dict]:
        """The local path and record of a calibration, downloading what is missing.

        Parameters
        ----------
        cal : dict | str
            A record, an id, or a path or file name in the cache.
        allow_retracted : bool | None
            Serve a retracted calibration (with a warning). None reads
            ``KOA_ALLOW_RETRACTED`` (default false).

        Returns
        -------
        tuple[str, dict]
            The cached file's absolute path and the local record.

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
        with self._outer_call() as outer:
            path, record = self._get_calibration(cal, allow_retracted)
        self._cached_files.note_use(record["id"])
        if outer:
            self._note_call("get_calibration", cal, None, record)
        return path, record

    def _get_calibration(self, cal: dict | str, allow_retracted: bool | None) -> tuple[str, dict]:
        self.readonly_caches.refresh(self.local_db)
        record = self._lookup_local(cal)
        if record is None:
            record = self._fetch_remote_record(cal)
        self._check_retraction(record, allow_retracted)
        serve_cached = self.use_cached or self.remote_db is None
        if serve_cached and (shared := self.readonly_caches.file_for(record, self._cached_files)):
            return str(shared), record
        path = self.layout.path_for(record["filename"])
        info = lstat_or_none(path)
        if info is not None and serve_cached:
            problem = self._cached_files.problem(record, path, info)
            if problem is None:
                return str(path), record
            if self.remote_db is None:
                raise ChecksumMismatchError(
                    f"The cached file {path} {problem}; it is not served. Run `koa-cal verify "
                    "--repair` with an archive configured to fetch a fresh copy (or register "
                    "the calibration again)."
                )
            logger.warning("The cached file %s %s; fetching a fresh copy.", path, problem)
        try:
            return str(self._download(record, force=info is not None)), record
        except ArchiveError as exc:
            if info is None or exc.status != 404 or serve_cached:
                raise
            if self._cached_files.problem(record, path, info) is not None:
                raise
            logger.warning(
                "%s is not on the archive (%s); using the cached copy.", record["filename"], exc
            )
            return str(path), record

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
        self.readonly_caches.refresh(self.local_db)
        return self._select_and_get(input, selector, self.selection_db(), kwargs)

    def _select_and_get(
        self, input: Any, selector: Any, db: Any, kwargs: dict, allow_retracted: bool = False
    ) -> tuple[str, dict]:
        """Select among the records ``db`` shows (a run's pin first), get, record."""
        with self._outer_call() as outer:
            result = self._replay_selection(input, selector)
            if result is None:
                record = selector.select(input, db, **kwargs)
                if record is None:
                    raise CalibrationNotFoundError(
                        f"{selector!r} found no calibration for input {_describe(input)}; "
                        "check the local database (koa-cal query) or sync from the archive."
                    )
                result = self.get_calibration(record, allow_retracted=allow_retracted)
        if outer:
            self._note_call("select_and_get_calibration", input, selector, result[1])
        return result

    # -- querying ----------------------------------------------------------

    def _database_for(self, source: str | None, default: str) -> Any:
        source = (source or default).lower()
        if source == "local":
            return self.local_db
        if source == "remote":
            return self._require_remote("query the archive")
        raise ValueError(f"Invalid source {source!r}: use 'local' or 'remote'.")

    def query(self, source: str | None = None, **kwargs: Any) -> list[dict] | dict | None:
        """Query the local (default) or remote database; see ``LocalCalibrationDB.query``."""
        self.readonly_caches.refresh(self.local_db)
        return self._database_for(source, "local").query(**kwargs)

    def get_last_updated(self, source: str | None = None, **kwargs: Any) -> str | None:
        """Newest ``last_updated`` of the remote database if connected, else the local one."""
        default = "remote" if self.remote_db is not None else "local"
        return self._database_for(source, default).get_last_updated(**kwargs)

    def sync_records_from_cached_files(
        self, cals: SupportsCalibrationModelIO | dict | Sequence[Any]
    ) -> list[dict]:
        """Record in the local database calibrations whose files are already in the cache.

        A record without a version is prepared as by registration
        (:meth:`_prepare_cal_record` with origin ``'LOCAL'``, as the reference
        does); every record gets the cached file's ``file_md5`` and ``file_size``.
        Versions are allocated one after the other, so records of one family
        get ``001``, ``002``, ...

        Returns
        -------
        list[dict]
            The records as stored.

        Raises
        ------
        CalibrationNotFoundError
            If a record's file is not in the cache; nothing is added.
        ChecksumMismatchError
            If a file's MD5 differs from the record's ``file_md5``; nothing is added.
        """
        if isinstance(cals, dict) or not isinstance(cals, Sequence):
            cals = [cals]
        # Hash the files before taking the write lock, which other processes wait for.
        completed = [
            complete_cached_file_record(self.layout, self.record_from(cal), "LOCAL") for cal in cals
        ]
        added = []
        with self.local_db.write_transaction():
            for cal, record in zip(cals, completed, strict=True):
                if record.get("cal_version") is None:
                    prepared = self._prepare_cal_record(cal, origin="LOCAL")
                    record = {**record, **prepared}
                added.append(self.local_db.add(record))
        return added

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

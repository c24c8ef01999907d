"""The local cache as one part: its folders, its database, its files and the caches it reads.

Where a record and its file come from is answered here, the same way for every
read of the store (lookup, selection, ``get``, ``prefetch``, ``verify``,
``status``, ``prune``):

Records
    This cache's database holds every record the store knows: those made here,
    those copied from each read-only cache together with the retractions that
    cache knows, and those pulled from the archive with theirs. A retraction
    known to any of them is in the database, so every selection honours it.
Files
    A record's file is served from the first read-only cache that holds it
    intact (in place), else from this cache's own folder; a file missing or
    damaged in both is fetched from the archive into the own folder.
    :meth:`LocalCache.locate` gives the answer as a :class:`FileLocation`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

from ..database.file_reads import rows_of_files
from ..database.local_database import LocalCalibrationDB
from ..datamodel_protocol import record_of
from ..errors import ConfigurationError, InvalidRecordError
from ..records import CalId, validate_cal_id
from .census import FileCensus, take_census
from .census_memo import CensusMemo
from .check import CachedFiles, lstat_or_none
from .layout import CacheLayout
from .lifecycle import Lifecycle
from .readonly import ReadOnlyCaches

logger = logging.getLogger(__name__)


__all__ = ["CalibrationRef", "FileLocation", "LocalCache"]


class CalibrationRef(NamedTuple):
    """What a caller named a calibration by, read once where it comes in.

    Attributes
    ----------
    cal_id : CalId | None
        The checked id, when the caller gave one (or a record carrying one).
    filename : str | None
        The file name, when the caller gave a path or a record without an id.
    text : str
        How the caller named it, for messages.

    Examples
    --------
    >>> CalibrationRef.parse("/data/dark_001.fits").filename
    'dark_001.fits'
    >>> CalibrationRef.parse({"id": "1B4E28BA-2FA1-4D2B-883F-0016D3CCA427"}).cal_id
    '1b4e28ba-2fa1-4d2b-883f-0016d3cca427'
    """

    cal_id: CalId | None
    filename: str | None
    text: str

    @classmethod
    def parse(cls, cal: Any) -> CalibrationRef:
        """Read an id, a path or file name, a record or a model.

        Raises
        ------
        InvalidRecordError
            If a record's ``id`` is not a calibration id, or ``cal`` is none of these.
        """
        if isinstance(cal, str | os.PathLike):
            text = os.fspath(cal)
            try:
                return cls(validate_cal_id(text), None, text)
            except InvalidRecordError:
                return cls(None, os.path.basename(text), text)
        record = record_of(cal)
        if record.get("id") is not None:
            cal_id = validate_cal_id(record["id"])
            return cls(cal_id, None, cal_id)
        filename = record.get("filename") or None
        return cls(None, filename, repr(filename))


class FileLocation(NamedTuple):
    """Where a record's file is, and whether it may be served.

    Attributes
    ----------
    path : Path
        The file: in a read-only cache when :attr:`in_place`, else in the own folder
        (where it is, or where a download puts it).
    in_place : bool
        The file is a read-only cache's, served where it is.
    present : bool
        Something is at :attr:`path`.
    problem : str | None
        What is wrong with the file at :attr:`path`; None when it may be served.
    """

    path: Path
    in_place: bool
    present: bool
    problem: str | None

    @property
    def usable(self) -> bool:
        """Whether the file may be served as it is."""
        return self.present and self.problem is None


class LocalCache:
    """One instrument's local cache: layout, database, files, read-only caches, lifecycle.

    Parameters
    ----------
    layout : CacheLayout
        The cache's folders.
    db : LocalCalibrationDB
        The cache's database.
    readonly : ReadOnlyCaches
        The read-only caches read before this one.
    origin : str
        The origin of calibrations made here.
    allow_retracted : bool
        Whether getting a retracted calibration by id warns instead of raising.

    Examples
    --------
    >>> import tempfile
    >>> from koa_middleware.config import resolve_config
    >>> cache = LocalCache.open(resolve_config("hispec", tempfile.mkdtemp()))
    >>> len(cache.db)
    0
    >>> cache.close()
    """

    def __init__(
        self,
        layout: CacheLayout,
        db: LocalCalibrationDB,
        readonly: ReadOnlyCaches,
        *,
        origin: str,
        allow_retracted: bool = False,
    ):
        self.layout = layout
        self.db = db
        self.readonly = readonly
        #: The stats of files placed or checked here (:class:`~.check.CachedFiles`).
        self.files = CachedFiles(db)
        #: Retractions, removals and what selection sees (:class:`~.lifecycle.Lifecycle`).
        self.lifecycle = Lifecycle(db, layout, origin=origin, allow_retracted=allow_retracted)

    @classmethod
    def open(cls, config: Any, *, create: bool = True) -> LocalCache:
        """Open the cache a :class:`~koa_middleware.config.StoreConfig` describes.

        Parameters
        ----------
        config : StoreConfig
            The resolved settings.
        create : bool
            Create the folders and database when missing. False creates
            nothing: an instrument without a database here is read from its
            read-only caches alone, into a database in memory.

        Raises
        ------
        ConfigurationError
            If the cache folder cannot be written (it names what to do instead).
        """
        layout = CacheLayout(
            config.cache_dir, config.instrument_name, lock_timeout=config.lock_timeout
        )
        filename = config.local_database_filename
        own: CacheLayout | None = layout
        if filename == ":memory:":
            db = LocalCalibrationDB(filename, config.table_name)
            if create:
                layout.create()
        elif create or (layout.database_dir / filename).is_file():
            _check_writable(layout, config)
            if create:
                layout.create()
            db = _open_database(layout, filename, config.table_name)
        else:  # nothing here yet, and nothing to be created: read the read-only caches
            db, own = LocalCalibrationDB(":memory:", config.table_name), None
        try:
            readonly = ReadOnlyCaches.from_config(config, own)
        except BaseException:
            db.close()
            raise
        cache = cls(
            layout, db, readonly, origin=config.origin, allow_retracted=config.allow_retracted
        )
        cache.lifecycle.open_selection()
        return cache

    def __repr__(self) -> str:
        return f"LocalCache({str(self.layout.root)!r}, instrument={self.layout.instrument!r})"

    @property
    def writable(self) -> bool:
        """Whether the cache has folders and a database of its own (not only in memory)."""
        return self.readonly.own is not None

    def refresh(self) -> int:
        """Bring in what the read-only caches added (records and retractions) since last time."""
        return self.readonly.refresh(self.db)

    # -- records ---------------------------------------------------------------

    def find(self, ref: CalibrationRef) -> dict | None:
        """The local record of ``ref`` (by id, else by file name), or None."""
        if ref.cal_id is not None:
            return self.db.query_id(ref.cal_id)
        if ref.filename:
            return self.db.query_filename(ref.filename)
        return None

    # -- files -----------------------------------------------------------------

    def locate(self, record: dict) -> FileLocation:
        """Where ``record``'s file is: a read-only cache's intact copy, else the own folder.

        A file in the own folder is checked by its stat (and by MD5 when the
        stat is not the one recorded); see :mod:`koa_middleware.cache.check`.

        Raises
        ------
        InvalidRecordError
            If the record's file name is not a plain name.
        """
        shared = self.readonly.file_for(record)
        if shared is not None:
            return FileLocation(shared, in_place=True, present=True, problem=None)
        path = self.layout.path_for(record["filename"])
        info = lstat_or_none(path)
        if info is None:
            return FileLocation(path, in_place=False, present=False, problem=None)
        try:
            problem = self.files.problem(record, path, info)
        except FileNotFoundError:
            # Pruned by another process between the stat and the read: fetch it again.
            return FileLocation(path, in_place=False, present=False, problem=None)
        return FileLocation(path, in_place=False, present=True, problem=problem)

    def missing_files(self) -> list[dict]:
        """Records whose file is neither in the own folder nor in a read-only cache."""
        return rows_of_files(self.db, self.file_census().missing)

    def file_census(self) -> FileCensus:
        """Which records have no file, and the bytes of the own folder (see :mod:`.census`)."""
        folders = [cache.layout.calibrations_dir for cache in self.readonly.caches]
        memo = CensusMemo.beside(self.db, self.layout) if self.writable else None
        return take_census(self.db, self.layout.calibrations_dir, folders, memo)

    def close(self) -> None:
        """Save what was noted of the files, close the views and the database."""
        self.files.save()
        self.lifecycle.close()
        self.db.close()


def _open_database(layout: CacheLayout, filename: str, table_name: str) -> LocalCalibrationDB:
    """Open the cache's database file, never through a link, in SQLite.

    SQLite opens files by their path; so the file is first opened (made when
    missing) through the descriptors of the cache's folders, and after SQLite
    opened it, its path must still lead to that same file. The database is thus
    never made, nor read, outside the cache, whatever another account of the
    cache's group renames meanwhile.

    Raises
    ------
    UnsafeCachePathError
        If the database folder or file is a link out of the cache, or was
        replaced while it was opened.
    """
    if os.path.basename(filename) != filename or filename in ("", ".", ".."):
        # a path the settings chose, outside the cache's folders: as given
        return LocalCalibrationDB(layout.database_dir / filename, table_name)
    prepared = layout.prepare_database_file(filename)
    db = LocalCalibrationDB(layout.database_dir / filename, table_name)
    try:
        layout.check_database_file(filename, prepared)
    except BaseException:
        db.close()
        raise
    return db


def _check_writable(layout: CacheLayout, config: Any) -> None:
    """Refuse, with what to do, a cache folder this process cannot write.

    Raises
    ------
    ConfigurationError
        If the folder (or the nearest existing folder above it) is not writable.
    """
    folder = layout.database_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if os.access(folder, os.W_OK | os.X_OK):
        return
    database = layout.database_dir / config.local_database_filename
    if database.is_file():
        raise ConfigurationError(
            f"The cache {layout.root} is not writable by this user: it looks like a shared "
            f"cache filled elsewhere. Name it in KOA_CALIBRATION_CACHE_READONLY and point "
            "--cache-dir (KOA_CALIBRATION_CACHE) at a folder of your own."
        )
    raise ConfigurationError(
        f"Cannot create the calibration cache in {layout.root}: {folder} is not writable by "
        "this user. Point --cache-dir (KOA_CALIBRATION_CACHE) at a folder you can write."
    )

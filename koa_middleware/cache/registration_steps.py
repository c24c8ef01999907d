"""The steps of registration that pipelines override, as the reference defines them.

:meth:`CalibrationStore.register_calibration` runs, in this order (see
:mod:`koa_middleware.cache.registration` for what holds them together):

1. :meth:`~RegistrationSteps._prepare_cal_record`: the record, with its
   version, origin and ``last_updated``;
2. :meth:`~RegistrationSteps.save_calibration_file`: the model writes its file
   (it names the file and may write the version into it);
3. :meth:`~RegistrationSteps._finalize_cal_record`: the file name, MD5 and
   size, from the saved file;
4. the record is added and the file put in place, in one transaction.

A subclass may override any step, and :meth:`get_version_family_column_names`
or :meth:`_get_next_calibration_version`. While a registration runs,
:attr:`data_dir` (and so :meth:`_get_local_filepath`) points at a private
folder of the cache, so whatever a step writes there appears in the cache
only once the record is committed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..datamodel_protocol import SupportsCalibrationModelIO
from ..errors import CalibrationSaveError, InvalidRecordError, VersionLimitError
from ..hashing import file_digest
from ..records import MAX_VERSION, normalize_timestamp, safe_path, utc_now
from .staging import Staging as _Staging
from .staging import copy_into as _copy_into
from .staging import empty_folder as _empty_folder
from .staging import fresh_folder as _fresh_folder

logger = logging.getLogger(__name__)

__all__ = ["RegistrationSteps"]


class RegistrationSteps:
    """Records, versions and the overridable steps of registration (a mixin of the store).

    It needs ``local_db``, ``layout``, ``origin`` and ``config`` from the class
    it is mixed into.
    """

    _staging: _Staging

    # -- records and version families ----------------------------------------

    def record_from(self, cal: dict | SupportsCalibrationModelIO) -> dict:
        """Return the record of ``cal``: the dict itself, or a model's ``to_record()``.

        Raises
        ------
        InvalidRecordError
            (a ``ValueError``) if ``cal`` is neither a dict nor a model, or its
            ``to_record()`` does not return a dict.

        Examples
        --------
        >>> store.record_from({"cal_type": "dark"})  # doctest: +SKIP
        {'cal_type': 'dark'}
        """
        if isinstance(cal, dict):
            return cal
        if hasattr(cal, "to_record"):
            record = cal.to_record()
            if not isinstance(record, dict):
                raise InvalidRecordError(
                    f"{type(cal).__name__}.to_record() returned {type(record).__name__}; "
                    "it must return a dict."
                )
            return record
        raise InvalidRecordError(
            f"Expected a calibration record (dict) or a model with to_record(), "
            f"got {type(cal).__name__}."
        )

    def get_version_family_column_names(self, cal_type: str) -> list[str]:
        """Columns whose values define a version family: the instrument profile's.

        The store's :attr:`profile` (see :mod:`koa_middleware.profiles`) gives
        them per ``cal_type``; a subclass that overrides this method wins over
        the profile.

        Parameters
        ----------
        cal_type : str
            The type of calibration.

        Returns
        -------
        list[str]
            The profile's columns for ``cal_type``; ``['cal_type',
            'datetime_obs']`` for an instrument without a profile.

        Examples
        --------
        >>> CalibrationStore("hispec", "/tmp/c").get_version_family_column_names(
        ...     "dark")  # doctest: +SKIP
        ['cal_type', 'spectrograph', 'instrument_era', 'datetime_obs']
        """
        profile = getattr(self, "profile", None)
        if profile is None:
            return ["cal_type", "datetime_obs"]
        return profile.family_columns_for(cal_type)

    def get_version_family_values(self, cal: dict | SupportsCalibrationModelIO) -> dict:
        """The values of ``cal``'s version-family columns (None where it has none).

        Raises
        ------
        InvalidRecordError
            If the record has no ``cal_type``.

        Examples
        --------
        >>> store.get_version_family_values({"cal_type": "dark",
        ...     "datetime_obs": "2024-01-01"})  # doctest: +SKIP
        {'cal_type': 'dark', 'datetime_obs': '2024-01-01T00:00:00.000'}
        """
        record = self.record_from(cal)
        if not record.get("cal_type"):
            raise InvalidRecordError(
                "The record has no cal_type, so its version family is unknown; add cal_type."
            )
        names = self.get_version_family_column_names(record["cal_type"])
        values = {name: record.get(name) for name in names}
        if values.get("datetime_obs") is not None:
            values["datetime_obs"] = normalize_timestamp(values["datetime_obs"], "datetime_obs")
        return values

    def _ensure_family_index(self, family: dict) -> None:
        key = tuple(family)
        if key not in self._family_indexes:
            self.local_db.ensure_index(("origin", *key))
            self._family_indexes.add(key)

    def _registration_origin(self, origin: str | None, record: dict) -> str:
        """The origin to register under: the argument, else the store's when it was
        set (argument or environment), else the record's, else ``'LOCAL'``."""
        if origin:
            return str(origin).strip().upper()
        if self.config.source("origin") != "default" or not record.get("origin"):
            return self.origin
        return str(record["origin"]).strip().upper()

    def generate_calibration_version(
        self, cal: dict | SupportsCalibrationModelIO, origin: str | None = None
    ) -> str:
        """The next version (``'001'``, ``'002'``, ...) in ``cal``'s family and origin.

        Raises
        ------
        VersionLimitError
            If the family already has version 999.

        Examples
        --------
        >>> store.generate_calibration_version(
        ...     {"cal_type": "dark", "datetime_obs": "2024-01-01"})  # doctest: +SKIP
        '001'
        """
        record = self.record_from(cal)
        origin = str(origin or record.get("origin") or self.origin).upper()
        version = self._get_next_calibration_version(record, origin=origin)
        if int(version) > MAX_VERSION:
            raise VersionLimitError(
                f"Version family {self.get_version_family_values(record)} of origin {origin} "
                f"already holds version {MAX_VERSION}; versions never wrap. Change a family "
                "value (such as datetime_obs) or register under another origin."
            )
        return version

    def _get_next_calibration_version(
        self, cal: dict | SupportsCalibrationModelIO, origin: str | None = None
    ) -> str:
        """One more than the highest version of ``cal``'s family and origin (``'001'`` if none).

        May return ``'1000'``: :meth:`generate_calibration_version` refuses it.
        """
        record = self.record_from(cal)
        origin = str(origin or record.get("origin") or self.origin).upper()
        family = self.get_version_family_values(record)
        self._ensure_family_index(family)
        return f"{self.local_db.max_version(family, origin) + 1:03d}"

    # -- the steps of registration -------------------------------------------

    @property
    def data_dir(self) -> str:
        """The folder calibration files are saved into, ending with a separator.

        ``calibrations/<instrument>/`` of the cache; while a registration runs in
        this thread, the private folder whose files appear in the cache once the
        record is committed.
        """
        folder = self._staging.folder or self.layout.calibrations_dir
        return os.path.join(str(folder), "")

    def _get_local_filepath(self, calibration: dict | str) -> str | None:
        """The path of a calibration's file in :attr:`data_dir` (None for a record without one).

        Raises
        ------
        InvalidRecordError
            If the file name is not a plain name (it would leave the cache).
        TypeError
            If ``calibration`` is neither a record nor a file name.

        Examples
        --------
        >>> store._get_local_filepath({"filename": "dark.fits"})  # doctest: +SKIP
        '/tmp/koa_cache/calibrations/hispec/dark.fits'
        """
        if isinstance(calibration, dict):
            filename = calibration.get("filename")
            if filename is None:
                return None
        elif isinstance(calibration, str):
            filename = calibration
        else:
            raise TypeError(
                f"Expected a calibration record (dict) or a file name, got "
                f"{type(calibration).__name__}."
            )
        return str(safe_path(self.data_dir, filename))

    def _prepare_cal_record(
        self,
        cal: dict | SupportsCalibrationModelIO,
        origin: str | None = None,
        version: bool = True,
        last_updated: bool = True,
    ) -> dict:
        """Step 1: the record of ``cal``, with version, origin and ``last_updated`` set.

        The record is the dict ``to_record()`` returned, updated in place, so a
        model whose file name depends on its version sees it before saving.

        Parameters
        ----------
        cal : dict | SupportsCalibrationModelIO
            The calibration.
        origin : str | None
            Origin to register under (see :meth:`register_calibration`).
        version : bool
            Allocate the next version of the family (and set ``origin``).
        last_updated : bool
            Stamp ``last_updated`` with the current UTC time.

        Returns
        -------
        dict
            The record.
        """
        record = self.record_from(cal)
        if version:
            origin = self._registration_origin(origin, record)
            record["cal_version"] = self.generate_calibration_version(record, origin=origin)
            record["origin"] = origin
        if last_updated:
            record["last_updated"] = utc_now()
        return record

    def save_calibration_file(
        self, cal: SupportsCalibrationModelIO, cal_record: dict | None = None
    ) -> str:
        """Step 2: let the model write its file (``cal.save(output_dir=data_dir)``).

        The model names its own file. Called on its own, the file is written
        under a private folder and moved into the cache complete; a file that
        belongs to a registered calibration is never replaced.

        Parameters
        ----------
        cal : SupportsCalibrationModelIO
            The model to save.
        cal_record : dict | None
            Its record (for overrides that name the file or write it into the file).

        Returns
        -------
        str
            The saved file's path.

        Raises
        ------
        CalibrationSaveError
            If ``save()`` fails or writes no file.
        InvalidRecordError
            If the file would replace the file of a registered calibration.
        """
        if self._staging.folder is not None:
            return save_model(cal, self.data_dir)
        with self._staged() as folder:
            staged = self._adopt_saved_file(save_model(cal, self.data_dir), folder)
            destination = self.layout.path_for(staged.name)
            if destination.exists() and self.local_db.query_filename(staged.name):
                raise InvalidRecordError(
                    f"{destination} belongs to a registered calibration and is not replaced; "
                    "give the new file another name, or register it with new_version=True."
                )
            from .layout import place_file

            place_file(staged, destination)
            return str(destination)

    def _finalize_cal_record(
        self, cal: Any, cal_record: Any, local_filepath: str | None = None
    ) -> dict:
        """Step 3: the file name, MD5 and size of the saved file, into the record.

        Called as ``(cal, cal_record, local_filepath)``. Pipelines written a
        little earlier override it as ``(cal_record, local_filepath)`` and call
        ``super()`` that way; both forms work, and overrides are called the way
        they are declared.

        Examples
        --------
        >>> path = "/cache/dark_001.fits"
        >>> record = store._finalize_cal_record(model, record, path)  # doctest: +SKIP
        """
        if local_filepath is None:  # the earlier form: (cal_record, local_filepath)
            cal_record, local_filepath = cal, cal_record
        md5, size = self._file_digest(local_filepath)
        cal_record["filename"] = os.path.basename(local_filepath)
        cal_record["file_md5"] = md5
        cal_record["file_size"] = size
        return cal_record

    # -- the private folder of a registration ----------------------------------

    @contextlib.contextmanager
    def _staged(self) -> Iterator[Path]:
        """Point :attr:`data_dir` of this thread at its private folder of the cache.

        The folder is emptied when the block ends, whatever happened in it. A
        link or file put in the folder's place is removed (never followed) and
        the folder made again.

        Raises
        ------
        UnsafeCachePathError
            If ``tmp/<instrument>`` is a link leading out of the cache.
        """
        staging = self._staging
        if staging.folder is not None:
            yield staging.folder
            return
        folder = staging.reserved
        if folder is None:
            folder = staging.reserved = self.layout.tmp_dir / f"{uuid.uuid4().hex}.stage"
            self._stage_folders.append(folder)
        self.layout.check_folders()
        _fresh_folder(folder)
        staging.folder, staging.digests = folder, {}
        try:
            yield folder
        finally:
            staging.folder, staging.digests = None, {}
            _empty_folder(folder)

    def _file_digest(self, path: str | os.PathLike) -> tuple[str, int]:
        """MD5 and size of a file, computed once per registration."""
        key = os.fspath(path)
        digests = self._staging.digests if self._staging.folder is not None else {}
        if key not in digests:
            digests[key] = file_digest(key)
        return digests[key]

    def _adopt_saved_file(self, saved: str | os.PathLike, folder: Path) -> Path:
        """The saved file, inside the private ``folder``: moved or copied there if need be.

        A file a step wrote straight into the cache is moved (unless a registered
        calibration owns it); a file elsewhere is copied, leaving the original alone.

        The copy is a new file of the private folder (``O_EXCL``, ``O_NOFOLLOW``):
        a link planted under its name is replaced, never written through.

        Raises
        ------
        CalibrationSaveError
            If ``saved`` is not a regular file (a link is refused too).
        CacheFullError
            If the cache's file system has no room for the copy (the partial copy
            is removed).
        """
        saved = os.fspath(saved)
        try:
            info = os.lstat(saved)
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            raise CalibrationSaveError(
                f"save() returned {saved!r}, which is not a regular file; save() must "
                "write the file and return its path. Nothing was registered."
            )
        if os.path.dirname(os.path.abspath(saved)) == str(folder):
            return Path(saved)
        path = Path(os.path.realpath(saved))
        target = safe_path(folder, path.name)
        if path.parent == Path(os.path.realpath(self.layout.calibrations_dir)):
            if self.local_db.query_filename(path.name):
                raise InvalidRecordError(
                    f"save() wrote {path}, the file of a registered calibration; save "
                    "into data_dir (or _get_local_filepath()) under a new name instead."
                )
            os.replace(path, target)
        else:
            _copy_into(path, target, info.st_size)
        return target

    def _remove_stage_folders(self) -> None:
        """Remove the private folders of this store's registrations (when it closes)."""
        for folder in self._stage_folders:
            shutil.rmtree(folder, ignore_errors=True)
        self._stage_folders.clear()


def save_model(cal: Any, output_dir: str) -> str:
    """Call ``cal.save(output_dir=...)`` and return the path of the file it wrote.

    Raises
    ------
    CalibrationSaveError
        If ``save()`` raises or returns no file.
    """
    try:
        written = cal.save(output_dir=output_dir)
    except Exception as exc:
        raise CalibrationSaveError(
            f"{type(cal).__name__}.save() failed: {exc}. Nothing was registered."
        ) from exc
    if not written or not os.path.isfile(written):
        raise CalibrationSaveError(
            f"{type(cal).__name__}.save(output_dir=...) wrote no file (it returned "
            f"{written!r}); save() must write the file and return its path. Nothing was "
            "registered."
        )
    return os.fspath(written)

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
folder of the cache (the store's :class:`~koa_middleware.cache.staging.Staging`,
``store.staging``), so whatever a step writes there appears in the cache only
once the record is committed.

**Where the model's file went.** A model that records where ``save()`` wrote
its file would be left pointing into the private folder, which is emptied
when the registration ends. Once the file is renamed into the cache,
:func:`point_model_at` tells the model where it went, for models that keep
the path as stdatamodels-style models do:

- ``model._filepath`` is set to the registered file's absolute path, when the
  model has that attribute;
- ``model.meta.filename`` is set to its file name, when ``model.meta`` is an
  object (not a dict) with a ``filename`` attribute.

This is done when the model's bytes are the registered file's: a new
registration, or one answered by the calibration already registered with the
same MD5. When the model's file is not kept (an error, or a family member
with other bytes is returned instead), both are put back as they were before
registration. A model with neither attribute is left alone; the returned path
is the registered file either way.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..datamodel_protocol import SupportsCalibrationModelIO, record_of
from ..errors import CalibrationSaveError, InvalidRecordError, VersionLimitError
from ..records import MAX_VERSION, normalize_timestamp, safe_path, utc_now
from .layout import place_file
from .staging import Staging
from .staging import empty_folder as _empty_folder  # noqa: F401  (its earlier import path)

logger = logging.getLogger(__name__)

__all__ = ["ModelPath", "RegistrationSteps", "point_model_at", "save_model"]


class RegistrationSteps:
    """Records, versions and the overridable steps of registration: the store's base class.

    A subclass (the store) provides ``local_db``, ``layout``, ``origin``,
    ``config`` and ``staging`` (a :class:`~koa_middleware.cache.staging.Staging`);
    pipelines override the steps.
    """

    #: The private folders of registrations and the MD5s of the files saved there.
    staging: Staging

    # -- records and version families ----------------------------------------

    def record_from(self, cal: dict | SupportsCalibrationModelIO) -> dict:
        """Return the record of ``cal``: the dict itself, or a model's ``to_record()``.

        See :func:`koa_middleware.datamodel_protocol.record_of`, which raises
        :class:`~koa_middleware.errors.InvalidRecordError` for anything else.
        """
        return record_of(cal)

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
        folder = self.staging.folder or self.layout.calibrations_dir
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
        under a private folder and moved into the cache complete, and the model
        is pointed at it (:func:`point_model_at`); a file that belongs to a
        registered calibration is never replaced.

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
        staging = self.staging
        if staging.folder is not None:
            return save_model(cal, self.data_dir)
        remembered = ModelPath.remember(cal)
        try:
            with staging.staged() as folder:
                staged = staging.adopt(save_model(cal, self.data_dir), folder)
                destination = self.layout.path_for(staged.name)
                if destination.exists() and self.local_db.query_filename(staged.name):
                    raise InvalidRecordError(
                        f"{destination} belongs to a registered calibration and is not "
                        "replaced; give the new file another name, or register it with "
                        "new_version=True."
                    )
                place_file(staged, destination)
        except BaseException:
            remembered.restore()
            raise
        point_model_at(cal, destination)
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
        md5, size = self.staging.digest(local_filepath)
        cal_record["filename"] = os.path.basename(local_filepath)
        cal_record["file_md5"] = md5
        cal_record["file_size"] = size
        return cal_record


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


#: The attribute in which a model keeps the path of its saved file (stdatamodels-style).
_FILEPATH = "_filepath"


class ModelPath:
    """What a model says of where its file is, remembered to be put back.

    Parameters
    ----------
    cal : Any
        The model.
    filepath, filename : tuple
        ``(present, value)`` of ``cal._filepath`` and of ``cal.meta.filename``.
    """

    def __init__(self, cal: Any, filepath: tuple[bool, Any], filename: tuple[bool, Any]):
        self.cal = cal
        self.filepath = filepath
        self.filename = filename

    @classmethod
    def remember(cls, cal: Any) -> ModelPath:
        """Remember ``cal._filepath`` and ``cal.meta.filename`` as they are now."""
        meta = _meta_object(cal)
        return cls(cal, _attribute(cal, _FILEPATH), _attribute(meta, "filename"))

    def restore(self) -> None:
        """Put both back as remembered (removing ``_filepath`` if the model had none)."""
        present, value = self.filepath
        if present:
            _set(self.cal, _FILEPATH, value)
        elif _attribute(self.cal, _FILEPATH)[0]:
            try:
                delattr(self.cal, _FILEPATH)
            except (AttributeError, TypeError):
                logger.debug("Could not remove %s._filepath", type(self.cal).__name__)
        meta = _meta_object(self.cal)
        present, value = self.filename
        if present and meta is not None:
            _set(meta, "filename", value)


def point_model_at(cal: Any, path: str | os.PathLike) -> None:
    """Tell ``cal`` that its file is now ``path`` (see "Where the model's file went" above).

    Sets ``cal._filepath`` (to the absolute path) and ``cal.meta.filename`` (to
    the file name) when the model has them; other models are left alone.

    Examples
    --------
    >>> class Meta:
    ...     filename = "dark.fits"
    >>> class Model:
    ...     _filepath = "/tmp/koa/tmp/hispec/0f.stage/dark.fits"
    ...     meta = Meta()
    >>> model = Model()
    >>> point_model_at(model, "/tmp/koa/calibrations/hispec/dark_v002.fits")
    >>> model._filepath, model.meta.filename
    ('/tmp/koa/calibrations/hispec/dark_v002.fits', 'dark_v002.fits')
    """
    path = os.path.abspath(os.fspath(path))
    if _attribute(cal, _FILEPATH)[0]:
        _set(cal, _FILEPATH, path)
    meta = _meta_object(cal)
    if meta is not None and _attribute(meta, "filename")[0]:
        _set(meta, "filename", os.path.basename(path))


def _meta_object(cal: Any) -> Any:
    """``cal.meta`` when it is an object; a dict ``meta`` is the model's record, left alone."""
    try:
        meta = getattr(cal, "meta", None)
    except Exception:  # a model whose meta cannot be read has none to update
        return None
    return None if meta is None or isinstance(meta, dict) else meta


def _attribute(owner: Any, name: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``owner`` has the attribute, else ``(False, None)``."""
    if owner is None:
        return False, None
    try:
        return True, getattr(owner, name)
    except Exception:  # missing, or a checked attribute that cannot be read: absent
        return False, None


def _set(owner: Any, name: str, value: Any) -> None:
    try:
        setattr(owner, name, value)
    except Exception as exc:  # a read-only or validated attribute: the model keeps its own
        logger.debug("Could not set %s.%s: %s", type(owner).__name__, name, exc)

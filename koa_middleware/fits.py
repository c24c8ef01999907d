"""Calibration files you already have, as FITS files on disk.

:class:`FITSCalibration` wraps a FITS file as a
:class:`~koa_middleware.datamodel_protocol.SupportsCalibrationModelIO`, so it can
be registered with
:meth:`~koa_middleware.store.CalibrationStore.register_calibration`. Its record
is built from header keywords through a mapping (:data:`DEFAULT_HEADER_MAP`)
that the caller can extend or change; keyword arguments override any field.

Reading FITS headers needs astropy, the optional extra ``[fits]``::

    pip install 'koa_middleware[fits]'

Examples
--------
>>> from koa_middleware.fits import FITSCalibration  # doctest: +SKIP
>>> cal = FITSCalibration("master_dark_20240101.fits", spectrograph="spec_a")  # doctest: +SKIP
>>> store.register_calibration(cal)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidRecordError
from .fits_headers import (  # the public names also for those who import them from here
    _REQUIRED,
    CAL_TYPE_ALIASES,  # noqa: F401
    DEFAULT_HEADER_MAP,  # noqa: F401
    _fields_from_headers,
    _merge_header_map,
    _validated,
    datetime_from_mjd,  # noqa: F401
    import_astropy_fits,  # noqa: F401
    mjd_from_datetime,  # noqa: F401
    read_fits_header,  # noqa: F401
)
from .records import safe_path

if TYPE_CHECKING:
    from .profiles import InstrumentProfile

logger = logging.getLogger(__name__)

__all__ = ["FITSCalibration", "fits_record", "fits_metadata"]

_CHUNK = 1 << 20


class FITSCalibration:
    """A calibration FITS file on disk, ready to register in a calibration store.

    Parameters
    ----------
    path : str | os.PathLike
        The FITS file.
    header_map : Mapping | None
        Changes to :data:`DEFAULT_HEADER_MAP`: record field -> header keyword
        (or list of keywords, tried in order). A field mapped to None is left
        out. Fields not given keep their default keywords (or the profile's).
    profile : InstrumentProfile | None
        Keyword only. The instrument's profile
        (:func:`~koa_middleware.profiles.load_profile`): its header map
        applies (``header_map`` wins over it), and a file lacking a column the
        profile requires of its ``cal_type`` is refused, naming the keywords.
    **overrides
        Record fields to set regardless of the header (they win over it), e.g.
        ``cal_type="dark"`` or ``spectrograph="spec_a"``.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not an existing file.

    Examples
    --------
    >>> cal = FITSCalibration("dark.fits", header_map={"spectrograph": "SPECNAME"},
    ...                       instrument_era="era2")  # doctest: +SKIP
    >>> cal.to_record()["cal_type"]  # doctest: +SKIP
    'dark'
    >>> FITSCalibration("dark.fits", profile=load_profile("hispec"))  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        header_map: Mapping[str, Any] | None = None,
        *,
        profile: InstrumentProfile | None = None,
        **overrides: Any,
    ):
        self.path = Path(path).expanduser().absolute()
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} does not exist or is not a file; check the path.")
        self.profile = profile
        if profile is not None:
            header_map = {**profile.header_map, **(header_map or {})}
        self.header_map = _merge_header_map(header_map)
        self.overrides = dict(overrides)
        self._record: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def filename(self) -> str:
        """The file name the calibration is stored under (the record's, once built)."""
        if self._record is not None and self._record.get("filename"):
            return self._record["filename"]
        return self.overrides.get("filename") or self.path.name

    def to_record(self) -> dict[str, Any]:
        """Build the calibration record from the file's headers and the overrides.

        The dict is built once and the same object is returned on later calls,
        so a store can complete it (id, version) before :meth:`save`.

        Returns
        -------
        dict
            The record: ``filename`` (the file's base name), the fields found
            through the header map, then the overrides.

        Raises
        ------
        InvalidRecordError
            If the file is not FITS, its ``DATE-OBS`` is not an ISO 8601 date,
            or a required field (``cal_type``, ``datetime_obs``, and those the
            profile requires of the ``cal_type``) has no header keyword and no
            override; the message names the keywords to add and the override
            to pass.
        ImportError
            If astropy is not installed.
        """
        if self._record is None:
            self._record = self._build_record()
        return self._record

    def _build_record(self) -> dict[str, Any]:
        record = _fields_from_headers(self.path, self.header_map, self.overrides)
        missing = [field for field in _REQUIRED if record.get(field) in (None, "")]
        if missing:
            raise self._missing_error(missing, self._missing_message(missing))
        required = self._profile_required(record)
        missing = [field for field in required if record.get(field) in (None, "")]
        if missing:
            raise self._missing_error(missing, self._profile_message(record, missing))
        return _validated(self.path, record, (*_REQUIRED, *required))

    @staticmethod
    def _missing_error(missing: list[str], message: str) -> InvalidRecordError:
        error = InvalidRecordError(message)
        error.missing_fields = missing  # lets a caller phrase its own hint
        return error

    def _profile_required(self, record: Mapping[str, Any]) -> list[str]:
        if self.profile is None:
            return []
        return self.profile.required_for(str(record.get("cal_type") or ""))

    def _profile_message(self, record: Mapping[str, Any], missing: list[str]) -> str:
        """Which keywords the profile requires of this file's type, and how to give them."""
        profile = self.profile
        hints = []
        for field in missing:
            keywords = self.header_map.get(field, ())
            where = (
                f"header keyword {' or '.join(keywords)} ({field})"
                if keywords
                else f"field {field} (no header keyword is mapped to it)"
            )
            hints.append(f"{where}: add it to the header, or pass {field}=...")
        return (
            f"{self.path.name} lacks what the {profile.instrument} profile requires of every "
            f"{record.get('cal_type')} calibration, so it is not registered: "
            + "; ".join(hints)
            + f" (profile: {profile.source}). Selectors match on these, so a calibration "
            "without them could never be chosen."
        )

    def _missing_message(self, missing: list[str]) -> str:
        hints = []
        for field in missing:
            if field == "datetime_obs":
                keywords = self.header_map.get("datetime_obs", ()) + self.header_map.get(
                    "mjd_start", ()
                )
                example = "datetime_obs='2024-01-01T03:00:00'"
            else:
                keywords = self.header_map.get(field, ())
                example = f"{field}='dark'" if field == "cal_type" else f"{field}=..."
            where = (
                f"add header keyword {' or '.join(keywords)}"
                if keywords
                else f"map it with header_map={{{field!r}: 'KEYWORD'}}"
            )
            hints.append(f"{field}: {where}, or pass {example}")
        return (
            f"{self.path.name} lacks the calibration field(s) {', '.join(missing)}. "
            + "; ".join(hints)
            + "."
        )

    def save(self, output_dir: str | None = None, output_path: str | None = None) -> str:
        """Copy the FITS file to ``output_path``, or into ``output_dir`` under its file name.

        Parameters
        ----------
        output_dir : str | None
            Folder to copy into, under :attr:`filename`.
        output_path : str | None
            Full destination path; takes precedence over ``output_dir``.

        Returns
        -------
        str
            The path of the copy; the original's path when neither is given or
            the destination is the original itself.

        Raises
        ------
        InvalidRecordError
            If the file name would leave ``output_dir``.
        OSError
            If the copy fails; no partial copy is left behind.
        """
        if output_path is not None:
            destination = Path(output_path)
        elif output_dir is not None:
            destination = safe_path(output_dir, self.filename)
        else:
            return str(self.path)
        if destination.exists() and destination.samefile(self.path):
            return str(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.path, "rb") as source, open(destination, "wb") as target:
                shutil.copyfileobj(source, target, _CHUNK)
        except BaseException:
            destination.unlink(missing_ok=True)
            raise
        logger.debug("Copied %s to %s", self.path, destination)
        return str(destination)


def fits_record(
    path: str | os.PathLike,
    header_map: Mapping[str, Any] | None = None,
    *,
    profile: InstrumentProfile | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Return the calibration record of a FITS file (see :class:`FITSCalibration`).

    Parameters
    ----------
    path : str | os.PathLike
        The FITS file.
    header_map : Mapping | None
        Changes to :data:`DEFAULT_HEADER_MAP`.
    profile : InstrumentProfile | None
        Keyword only. The instrument's profile: its header map, and the
        columns it requires of the ``cal_type``.
    **overrides
        Record fields that win over the header.

    Returns
    -------
    dict
        A new record dict.

    Raises
    ------
    InvalidRecordError
        If the file is not FITS or lacks a required field.

    Examples
    --------
    >>> fits_record("dark.fits", spectrograph="spec_b")["spectrograph"]  # doctest: +SKIP
    'spec_b'
    """
    return dict(FITSCalibration(path, header_map, profile=profile, **overrides).to_record())


def fits_metadata(
    path: str | os.PathLike, header_map: Mapping[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Return the metadata of any FITS file (a science frame, say) through the header map.

    Unlike :func:`fits_record`, no field is required: a science frame has no
    ``cal_type``. Times are completed and normalized as for records
    (``datetime_obs`` from ``DATE-OBS`` and a time keyword, or from ``MJD-OBS``;
    ``mjd_start`` from ``datetime_obs``).

    Parameters
    ----------
    path : str | os.PathLike
        The FITS file.
    header_map : Mapping | None
        Changes to :data:`DEFAULT_HEADER_MAP`.
    **overrides
        Fields that win over the header.

    Returns
    -------
    dict
        The fields found, plus ``filename``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InvalidRecordError
        If the file is not FITS or a value breaks the record rules.

    Examples
    --------
    >>> fits_metadata("science_0001.fits")["spectrograph"]  # doctest: +SKIP
    'spec_a'
    """
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file; check the path.")
    record = _fields_from_headers(path, _merge_header_map(header_map), overrides)
    return _validated(path, record, ())

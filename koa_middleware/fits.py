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
import re
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .errors import InvalidRecordError
from .records import normalize_timestamp, safe_path, validate_record

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_HEADER_MAP",
    "CAL_TYPE_ALIASES",
    "FITSCalibration",
    "fits_record",
    "fits_metadata",
    "read_fits_header",
    "import_astropy_fits",
    "mjd_from_datetime",
    "datetime_from_mjd",
]

#: Record field -> FITS header keyword(s), tried in order; the first keyword
#: present with a value wins. ``time_obs`` is not a record field: it completes a
#: ``DATE-OBS`` that holds only a date.
DEFAULT_HEADER_MAP: dict[str, tuple[str, ...]] = {
    "cal_type": ("CALTYPE", "IMAGETYP", "OBSTYPE"),
    "datetime_obs": ("DATE-OBS", "DATE-BEG"),
    "time_obs": ("UTC", "TIME-OBS", "UT"),
    "mjd_start": ("MJD-OBS", "MJD-BEG", "MJD"),
    "spectrograph": ("SPECTROG", "SPEC"),
    "instrument_era": ("INSTERA", "ERA"),
    "master_cal": ("MASTRCAL", "MASTER"),
    "exptime": ("EXPTIME", "ELAPTIME", "ITIME"),
    "instrument": ("INSTRUME",),
    "detector": ("DETECTOR",),
    "filter": ("FILTER",),
}

#: Normalized header values of ``cal_type`` (lower case, single spaces) that
#: name a common calibration type differently.
CAL_TYPE_ALIASES: dict[str, str] = {
    "zero": "bias",
    "biasframe": "bias",
    "dark frame": "dark",
    "darkframe": "dark",
    "flat field": "flat",
    "flatfield": "flat",
    "flatlamp": "flat",
    "flat lamp": "flat",
    "arc lamp": "arc",
    "arclamp": "arc",
    "comp": "arc",
    "comparison": "arc",
    "wavecal": "arc",
}

# Fields the header map may name that are not copied into the record.
_HELPER_FIELDS = frozenset({"time_obs"})
_REQUIRED = ("filename", "cal_type", "datetime_obs")
_MJD_EPOCH = datetime(1858, 11, 17)
_OLD_DATE_RE = re.compile(r"^(\d{2})/(\d{2})/(\d{2})$")  # DD/MM/YY, pre-1999 FITS
_CHUNK = 1 << 20


def import_astropy_fits() -> Any:
    """Import and return ``astropy.io.fits``, or explain how to install it.

    Returns
    -------
    module
        ``astropy.io.fits``.

    Raises
    ------
    ImportError
        If astropy is missing; the message gives ``pip install 'koa_middleware[fits]'``.
    """
    try:
        from astropy.io import fits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Reading FITS files needs astropy, which is not installed: "
            "pip install 'koa_middleware[fits]'"
        ) from exc
    return fits


def mjd_from_datetime(timestamp: str | datetime) -> float:
    """Return the Modified Julian Date of a UTC timestamp.

    Parameters
    ----------
    timestamp : str | datetime
        A UTC time (ISO string or naive ``datetime``).

    Returns
    -------
    float
        Days since 1858-11-17T00:00 UTC.

    Examples
    --------
    >>> mjd_from_datetime("2024-01-01T12:00:00.000")
    60310.5
    """
    moment = datetime.fromisoformat(timestamp) if isinstance(timestamp, str) else timestamp
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - _MJD_EPOCH) / timedelta(days=1)


def datetime_from_mjd(mjd: float) -> str:
    """Return the UTC timestamp (``YYYY-MM-DDTHH:MM:SS.sss``) of a Modified Julian Date.

    Examples
    --------
    >>> datetime_from_mjd(60310.5)
    '2024-01-01T12:00:00.000'
    """
    return (_MJD_EPOCH + timedelta(days=float(mjd))).isoformat(timespec="milliseconds")


def read_fits_header(path: str | os.PathLike) -> list[Mapping[str, Any]]:
    """Read the headers of every HDU of a FITS file, primary first.

    Parameters
    ----------
    path : str | os.PathLike
        The FITS file.

    Returns
    -------
    list of Mapping
        One astropy ``Header`` per HDU.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InvalidRecordError
        If the file is not a readable FITS file.
    ImportError
        If astropy is not installed.
    """
    fits = import_astropy_fits()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file; check the path.")
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdus:
            headers = [hdu.header.copy() for hdu in hdus]
    except (OSError, ValueError, TypeError, IndexError) as exc:
        reason = re.split(r"[,.;]", str(exc), maxsplit=1)[0].strip() or type(exc).__name__
        raise InvalidRecordError(
            f"{path.name} is not a readable FITS file ({reason}); register only FITS files, "
            "or wrap other formats in your own SupportsCalibrationModelIO model."
        ) from exc
    if not headers:
        raise InvalidRecordError(f"{path.name} holds no FITS header; it is not a FITS file.")
    return headers


def _merge_header_map(header_map: Mapping[str, Any] | None) -> dict[str, tuple[str, ...]]:
    merged = dict(DEFAULT_HEADER_MAP)
    for field, keywords in (header_map or {}).items():
        if keywords is None:
            merged.pop(field, None)
        elif isinstance(keywords, str):
            merged[field] = (keywords,)
        elif isinstance(keywords, Sequence):
            merged[field] = tuple(keywords)
        else:
            raise TypeError(
                f"header_map[{field!r}] must be a keyword, a list of keywords or None, "
                f"not {type(keywords).__name__}."
            )
    return merged


def _header_value(headers: Sequence[Mapping[str, Any]], keywords: Sequence[str]) -> Any:
    """Return the first non-empty value of ``keywords`` across ``headers``."""
    for keyword in keywords:
        for header in headers:
            if keyword not in header:
                continue
            value = header[keyword]
            if hasattr(value, "item") and not isinstance(value, str):
                value = value.item()  # numpy scalar
            if isinstance(value, str):
                value = value.strip()
                if not value:
                    continue
            elif not isinstance(value, bool | int | float):
                continue  # an undefined card value
            return value
    return None


def _normalize_cal_type(value: Any) -> str:
    text = " ".join(str(value).split()).lower()
    return CAL_TYPE_ALIASES.get(text, text)


_DATE_ONLY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _combine_date_time(date: Any, time: Any) -> Any:
    """Turn the DATE-OBS forms into an ISO timestamp the record rules accept."""
    if not isinstance(date, str):
        return date
    old = _OLD_DATE_RE.match(date)
    if old:  # DD/MM/YY means 19YY
        day, month, year = old.groups()
        date = f"19{year}-{month}-{day}"
    if "T" not in date and " " not in date and isinstance(time, str) and time:
        return f"{date}T{time}"
    return date


def _fields_from_headers(
    path: Path, header_map: Mapping[str, tuple[str, ...]], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Collect the fields of ``header_map`` from a file's headers, then apply ``overrides``."""
    headers = read_fits_header(path)
    found: dict[str, Any] = {}
    for field, keywords in header_map.items():
        value = _header_value(headers, keywords)
        if value is not None:
            found[field] = value
    if "cal_type" in found:
        found["cal_type"] = _normalize_cal_type(found["cal_type"])
    if "datetime_obs" in found:
        found["datetime_obs"] = _combine_date_time(found["datetime_obs"], found.get("time_obs"))
    record: dict[str, Any] = {"filename": path.name}
    record.update((k, v) for k, v in found.items() if k not in _HELPER_FIELDS)
    record.update(overrides)
    if "cal_type" in overrides and isinstance(record["cal_type"], str):
        record["cal_type"] = _normalize_cal_type(record["cal_type"])
    if "datetime_obs" not in overrides:
        _warn_if_date_only(path, found.get("datetime_obs"))
    _complete_times(record, overrides)
    return record


def _warn_if_date_only(path: Path, stamp: Any) -> None:
    """Warn when the header gave a day but no time: nearest-in-time selection needs it."""
    if isinstance(stamp, str) and _DATE_ONLY_RE.match(stamp):
        logger.warning(
            "%s: DATE-OBS %s has no time of day, so it is dated %sT00:00:00 UTC, which can "
            "change which calibrations are nearest in time; add TIME-OBS (or UT) to the "
            "header, or pass datetime_obs with a time (koa-cal register --set "
            "datetime_obs=%sT03:00:00).",
            path.name,
            stamp,
            stamp,
            stamp,
        )


def _complete_times(record: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Fill ``datetime_obs`` from ``mjd_start`` or the other way round."""
    mjd = record.get("mjd_start")
    if record.get("datetime_obs") in (None, "") and isinstance(mjd, int | float):
        if not isinstance(mjd, bool):
            record["datetime_obs"] = datetime_from_mjd(mjd)
    derive_mjd = "mjd_start" not in record or (
        "datetime_obs" in overrides and "mjd_start" not in overrides
    )
    if record.get("datetime_obs") and derive_mjd:
        try:
            stamp = normalize_timestamp(record["datetime_obs"], "datetime_obs")
        except InvalidRecordError:
            return  # validate_record reports the bad value with its own message
        record["mjd_start"] = round(mjd_from_datetime(stamp), 8)


def _validated(path: Path, record: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    try:
        return validate_record(record, required=required)
    except InvalidRecordError as exc:
        raise InvalidRecordError(
            f"{path.name}: {exc} Fix the header keyword or pass the field as an override."
        ) from exc


class FITSCalibration:
    """A calibration FITS file on disk, ready to register in a calibration store.

    Parameters
    ----------
    path : str | os.PathLike
        The FITS file.
    header_map : Mapping | None
        Changes to :data:`DEFAULT_HEADER_MAP`: record field -> header keyword
        (or list of keywords, tried in order). A field mapped to None is left
        out. Fields not given keep their default keywords.
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
    """

    def __init__(
        self,
        path: str | os.PathLike,
        header_map: Mapping[str, Any] | None = None,
        **overrides: Any,
    ):
        self.path = Path(path).expanduser().absolute()
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} does not exist or is not a file; check the path.")
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
            If the file is not FITS, or a required field (``cal_type``,
            ``datetime_obs``) has no header keyword and no override; the
            message names the keywords to add and the override to pass.
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
            error = InvalidRecordError(self._missing_message(missing))
            error.missing_fields = missing  # lets a caller phrase its own hint
            raise error
        return _validated(self.path, record, _REQUIRED)

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
    path: str | os.PathLike, header_map: Mapping[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Return the calibration record of a FITS file (see :class:`FITSCalibration`).

    Parameters
    ----------
    path : str | os.PathLike
        The FITS file.
    header_map : Mapping | None
        Changes to :data:`DEFAULT_HEADER_MAP`.
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
    return dict(FITSCalibration(path, header_map, **overrides).to_record())


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

"""Reading calibration records from FITS headers: the header map, times, and checks.

:data:`DEFAULT_HEADER_MAP` says which header keywords give which record field;
:func:`read_fits_header` reads every header of a file (astropy, the extra
``[fits]``); the private helpers build a record from them, completing
``DATE-OBS`` with ``TIME-OBS`` and ``mjd_start`` from ``datetime_obs``.
:mod:`koa_middleware.fits` builds its data model on these.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .errors import InvalidRecordError
from .records import normalize_timestamp, validate_record

logger = logging.getLogger(__name__)

__all__ = [
    "CAL_TYPE_ALIASES",
    "DEFAULT_HEADER_MAP",
    "datetime_from_mjd",
    "header_metadata",
    "import_astropy_fits",
    "mjd_from_datetime",
    "read_fits_header",
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
#: The ISO 8601 forms of a FITS date (``YYYY-MM-DD``, ``YYYY-MM-DDThh:mm:ss[.s]``),
#: with an optional UTC designator or offset; the deprecated ``DD/MM/YY`` is not one.
_ISO_DATE_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)


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


_DATE_ONLY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")


def _combine_date_time(date: Any, time: Any) -> Any:
    """Complete a ``DATE-OBS`` that holds only a date with the time keyword's value."""
    if isinstance(date, str) and _DATE_ONLY_RE.match(date) and isinstance(time, str) and time:
        return f"{date}T{time}"
    return date


def _check_iso_date(name: str, headers: Sequence[Mapping[str, Any]], keywords: Any) -> None:
    """Refuse a header date that is not ISO 8601, quoting it as the header holds it.

    The old ``DD/MM/YY`` form names no century (FITS deprecated it in 1997):
    reading it as 19YY or 20YY would date a calibration a century off.
    """
    for keyword in keywords:
        value = _header_value(headers, (keyword,))
        if value is None:
            continue
        if not isinstance(value, str) or not _ISO_DATE_RE.match(value):
            raise InvalidRecordError(
                f"{name}: {keyword} {value!r} is not an ISO 8601 date "
                "(YYYY-MM-DD or YYYY-MM-DDThh:mm:ss, as the FITS standard asks; the "
                "DD/MM/YY form names no century), so datetime_obs cannot be read from it. "
                f"Fix the header, or pass datetime_obs='YYYY-MM-DDThh:mm:ss' "
                "(koa-cal register --set datetime_obs=...)."
            )
        return  # the first keyword with a value is the one used


def _fields_from_headers(
    path: Path, header_map: Mapping[str, tuple[str, ...]], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Collect the fields of ``header_map`` from a file's headers, then apply ``overrides``."""
    return _fields_from_read_headers(read_fits_header(path), path.name, header_map, overrides)


def header_metadata(
    headers: Sequence[Mapping[str, Any]], name: str, header_map: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The metadata of a frame from headers already read, as :func:`~.fits.fits_metadata` gives.

    Parameters
    ----------
    headers : sequence of Mapping
        Keyword -> value of each header, primary first (astropy ``Header`` objects,
        or dicts such as :func:`~koa_middleware.fits_cards.read_primary_header` reads).
    name : str
        The frame's file name (the metadata's ``filename``, and named in messages).
    header_map : Mapping | None
        Changes to :data:`DEFAULT_HEADER_MAP`.

    Raises
    ------
    InvalidRecordError
        If a value breaks the record rules (a date that is not ISO 8601, say).

    Examples
    --------
    >>> meta = header_metadata([{"DATE-OBS": "2024-01-01T12:00:00", "SPEC": "yJ"}], "sci.fits")
    >>> meta["datetime_obs"], meta["spectrograph"], meta["mjd_start"]
    ('2024-01-01T12:00:00.000', 'yJ', 60310.5)
    """
    record = _fields_from_read_headers(headers, name, _merge_header_map(header_map), {})
    return _validated(Path(name), record, ())


def _fields_from_read_headers(
    headers: Sequence[Mapping[str, Any]],
    name: str,
    header_map: Mapping[str, tuple[str, ...]],
    overrides: Mapping[str, Any],
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for field, keywords in header_map.items():
        value = _header_value(headers, keywords)
        if value is not None:
            found[field] = value
    if "cal_type" in found:
        found["cal_type"] = _normalize_cal_type(found["cal_type"])
    if "datetime_obs" in found and "datetime_obs" not in overrides:
        _check_iso_date(name, headers, header_map.get("datetime_obs", ()))
        found["datetime_obs"] = _combine_date_time(found["datetime_obs"], found.get("time_obs"))
    record: dict[str, Any] = {"filename": name}
    record.update((k, v) for k, v in found.items() if k not in _HELPER_FIELDS)
    record.update(overrides)
    if "cal_type" in overrides and isinstance(record["cal_type"], str):
        record["cal_type"] = _normalize_cal_type(record["cal_type"])
    if "datetime_obs" not in overrides:
        _warn_if_date_only(name, found.get("datetime_obs"))
    _complete_times(record, overrides)
    return record


def _warn_if_date_only(name: str, stamp: Any) -> None:
    """Warn when the header gave a day but no time: nearest-in-time selection needs it."""
    if isinstance(stamp, str) and _DATE_ONLY_RE.match(stamp):
        logger.warning(
            "%s: DATE-OBS %s has no time of day, so it is dated %sT00:00:00 UTC, which can "
            "change which calibrations are nearest in time; add TIME-OBS (or UT) to the "
            "header, or pass datetime_obs with a time (koa-cal register --set "
            "datetime_obs=%sT03:00:00).",
            name,
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

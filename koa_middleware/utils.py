"""Small helpers for ids, environment flags, checksums, KOA names and times.

These functions keep the names, signatures and results that pipelines written
for the original ``koa_middleware.utils`` rely on. Times are plain strings in
the form ``YYYY-MM-DDTHH:MM:SS.sss`` (UTC, milliseconds, no zone), as stored
in calibration records.

Examples
--------
>>> from koa_middleware.utils import is_valid_uuid, mjd_to_isot_ms
>>> is_valid_uuid("1b4e28ba-2fa1-4d2b-883f-0016d3cca427")
True
>>> mjd_to_isot_ms(60310.5)
'2024-01-01T12:00:00.000'
"""

from __future__ import annotations

# hashlib and timezone are unused here, but this module has always carried them in its
# namespace next to datetime, timedelta, os and re, and code may reach them through it.
import hashlib  # noqa: F401
import logging
import numbers
import os
import re
from datetime import UTC, date, datetime, timedelta, timezone  # noqa: F401

from .hashing import file_md5

logger = logging.getLogger(__name__)

__all__ = [
    "is_valid_uuid",
    "get_env_var_bool",
    "generate_md5_file",
    "get_koa_id_timestamp_from_datetime",
    "generate_koa_filehandle",
    "postgres_http_date_to_iso",
    "isot_to_mjd",
    "mjd_to_isot_ms",
    "datetime_to_isot_ms",
]

# A UUID of version 4 (random), RFC 4122 variant, in its hyphenated form; either case.
_UUID4 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE
)
_ENV_TRUE = frozenset({"1", "true", "yes", "on"})
_DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}")
_COMPACT_DATE = re.compile(r"\d{8}")
_KOA_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
_HTTP_DATE_FORMAT = "%a, %d %b %Y %H:%M:%S GMT"
#: The Unix epoch (1970-01-01) as a Modified Julian Date.
_UNIX_EPOCH_MJD = 40587.0
_DAY_SECONDS = 86400.0
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _require_str(value: object, what: str, example: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str such as {example!r}, not {type(value).__name__}.")
    return value


def _milliseconds(moment: date) -> str:
    """``YYYY-MM-DDTHH:MM:SS.sss`` of ``moment`` as it reads (no zone change), truncated."""
    return moment.strftime(_KOA_TIME_FORMAT)[:-3]


def is_valid_uuid(value: str) -> bool:
    """Tell whether ``value`` is a version-4 UUID in its hyphenated form.

    Either case is accepted; nothing may precede or follow the 36 characters
    (not even a newline). UUIDs of other versions (1, 3, 5, ...) are not valid.

    Parameters
    ----------
    value : str
        The text to check.

    Returns
    -------
    bool
        True for a version-4 UUID, otherwise False.

    Raises
    ------
    TypeError
        If ``value`` is not a str.

    Examples
    --------
    >>> is_valid_uuid("1B4E28BA-2FA1-4D2B-883F-0016D3CCA427")
    True
    >>> is_valid_uuid("6ba7b810-9dad-11d1-80b4-00c04fd430c8")  # version 1
    False
    >>> is_valid_uuid("1b4e28ba-2fa1-4d2b-883f-0016d3cca427\\n")
    False
    """
    _require_str(value, "is_valid_uuid: value", "1b4e28ba-2fa1-4d2b-883f-0016d3cca427")
    return _UUID4.fullmatch(value) is not None


def get_env_var_bool(name: str, default: bool | None = None) -> bool | None:
    """Read an environment variable as a flag.

    The value is true when it is ``1``, ``true``, ``yes`` or ``on`` in any
    case; any other value, the empty string included, is False.

    Parameters
    ----------
    name : str
        The environment variable.
    default : bool | None
        Returned, unchanged, when the variable is not set.

    Returns
    -------
    bool | None
        The flag, or ``default`` when the variable is not set.

    Raises
    ------
    TypeError
        If ``name`` is not a str.

    Examples
    --------
    >>> import os
    >>> os.environ["KOA_EXAMPLE_FLAG"] = "Yes"
    >>> get_env_var_bool("KOA_EXAMPLE_FLAG")
    True
    >>> os.environ["KOA_EXAMPLE_FLAG"] = "enabled"
    >>> get_env_var_bool("KOA_EXAMPLE_FLAG")
    False
    >>> del os.environ["KOA_EXAMPLE_FLAG"]
    >>> get_env_var_bool("KOA_EXAMPLE_FLAG", default=True)
    True
    """
    _require_str(name, "get_env_var_bool: name", "KOA_USE_CACHED_CALIBRATIONS")
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.lower() in _ENV_TRUE


def generate_md5_file(filepath: str) -> str:
    """Return the MD5 checksum of a file's contents.

    Parameters
    ----------
    filepath : str
        The file (a str or any path-like object).

    Returns
    -------
    str
        32 lower-case hexadecimal digits.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "abc.txt"
    >>> _ = path.write_bytes(b"abc")
    >>> generate_md5_file(str(path))
    '900150983cd24fb0d6963f7d28e17f72'
    """
    return file_md5(filepath)


def get_koa_id_timestamp_from_datetime(dt: str) -> str:
    """Return the time part of a KOA id: ``YYYYMMDD.SSSSS.ss``.

    ``SSSSS.ss`` is the number of seconds since midnight, rounded to two
    decimals and padded to eight characters.

    Parameters
    ----------
    dt : str
        The observation time, ``YYYY-MM-DDTHH:MM:SS.f`` (1 to 6 fraction
        digits, no time zone).

    Returns
    -------
    str
        The KOA id timestamp.

    Raises
    ------
    TypeError
        If ``dt`` is not a str.
    ValueError
        If ``dt`` is not in the form above.

    Examples
    --------
    >>> get_koa_id_timestamp_from_datetime("2024-09-24T12:34:56.780")
    '20240924.45296.78'
    >>> get_koa_id_timestamp_from_datetime("2024-09-24T00:00:01.5")
    '20240924.00001.50'
    """
    example = "2024-09-24T12:34:56.780"
    _require_str(dt, "get_koa_id_timestamp_from_datetime: dt", example)
    try:
        moment = datetime.strptime(dt, _KOA_TIME_FORMAT)
    except ValueError:
        raise ValueError(
            f"Invalid observation time {dt!r}: expected 'YYYY-MM-DDTHH:MM:SS.f' with a "
            f"fraction of a second and no time zone, e.g. {example!r}."
        ) from None
    whole = moment.hour * 3600 + moment.minute * 60 + moment.second
    seconds = whole + moment.microsecond / 1e6
    return f"{moment:%Y%m%d}.{seconds:08.2f}"


def generate_koa_filehandle(instrument_name: str, datetime_obs: str, koa_id: str) -> str:
    """Return the KOA file handle of an observation: ``/INSTRUMENT/YYYY/YYYYMMDD/KOA_ID``.

    Parameters
    ----------
    instrument_name : str
        The instrument, as it should appear in the path (e.g. ``'HISPEC'``).
    datetime_obs : str
        The observation time; only its leading ``YYYY-MM-DD`` is used. A date
        alone in the form ``YYYYMMDD`` is taken too.
    koa_id : str
        The KOA id (for HISPEC and PARVI also the file name).

    Returns
    -------
    str
        The file handle.

    Raises
    ------
    TypeError
        If an argument is not a str.
    ValueError
        If ``datetime_obs`` does not start with ``YYYY-MM-DD`` (nor is ``YYYYMMDD``).

    Examples
    --------
    >>> generate_koa_filehandle(
    ...     "HISPEC", "2024-09-24T12:34:56.780", "HB.20240924.45296.78.fits"
    ... )
    '/HISPEC/2024/20240924/HB.20240924.45296.78.fits'
    """
    _require_str(instrument_name, "generate_koa_filehandle: instrument_name", "HISPEC")
    _require_str(datetime_obs, "generate_koa_filehandle: datetime_obs", "2024-09-24T12:34:56.780")
    _require_str(koa_id, "generate_koa_filehandle: koa_id", "HB.20240924.45296.78.fits")
    if _COMPACT_DATE.fullmatch(datetime_obs):
        return f"/{instrument_name}/{datetime_obs[:4]}/{datetime_obs}/{koa_id}"
    if not _DATE_PREFIX.match(datetime_obs):
        raise ValueError(
            f"Invalid datetime_obs {datetime_obs!r}: expected a time starting with "
            "'YYYY-MM-DD', e.g. '2024-09-24T12:34:56.780', or a date 'YYYYMMDD'."
        )
    year, month, day = datetime_obs[:10].split("-")
    return f"/{instrument_name}/{year}/{year}{month}{day}/{koa_id}"


def postgres_http_date_to_iso(date_str: str) -> str:
    """Convert an ISO 8601 or HTTP-date time to ``YYYY-MM-DDTHH:MM:SS.sss``.

    Times with a zone (``Z``, an offset, or ``GMT`` in an HTTP-date) are
    converted to UTC; times without one are kept as they read. Digits past the
    millisecond are dropped, not rounded.

    Parameters
    ----------
    date_str : str
        An ISO 8601 time such as ``'2026-02-12T03:04:05.678901+02:00'``, or an
        HTTP-date as PostgreSQL-backed services send it, such as
        ``'Thu, 12 Feb 2026 00:00:00 GMT'``.

    Returns
    -------
    str
        The time, with millisecond precision and no zone.

    Raises
    ------
    TypeError
        If ``date_str`` is not a str.
    ValueError
        If ``date_str`` is in neither form.

    Examples
    --------
    >>> postgres_http_date_to_iso("Thu, 12 Feb 2026 00:00:00 GMT")
    '2026-02-12T00:00:00.000'
    >>> postgres_http_date_to_iso("2026-02-12T03:04:05.678901+02:00")
    '2026-02-12T01:04:05.678'
    >>> postgres_http_date_to_iso("2026-02-12T03:04:05Z")
    '2026-02-12T03:04:05.000'
    """
    _require_str(date_str, "postgres_http_date_to_iso: date_str", "2026-02-12T03:04:05.000")
    try:
        moment = datetime.fromisoformat(date_str.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = datetime.strptime(date_str, _HTTP_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(
                f"Invalid datetime string: {date_str!r}; expected ISO 8601 such as "
                "'2026-02-12T03:04:05.000' (optionally with 'Z' or an offset) or an "
                "HTTP-date such as 'Thu, 12 Feb 2026 00:00:00 GMT'."
            ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return _milliseconds(moment)


def isot_to_mjd(isot: str) -> float:
    """Convert an ISO 8601 time to a Modified Julian Date.

    Parameters
    ----------
    isot : str
        The time; without a zone it is taken as UTC, with one (``Z`` or an
        offset) it is converted to UTC.

    Returns
    -------
    float
        Days since 1858-11-17T00:00 UTC.

    Raises
    ------
    TypeError
        If ``isot`` is not a str.
    ValueError
        If ``isot`` is not an ISO 8601 time.

    Examples
    --------
    >>> isot_to_mjd("2024-01-01T12:00:00.000")
    60310.5
    >>> isot_to_mjd("2024-01-01T14:00:00+02:00")
    60310.5
    """
    _require_str(isot, "isot_to_mjd: isot", "2024-01-01T12:00:00.000")
    try:
        moment = datetime.fromisoformat(isot)
    except ValueError:
        raise ValueError(
            f"Invalid ISO 8601 time {isot!r}: expected e.g. '2024-01-01T12:00:00.000', "
            "optionally with 'Z' or an offset such as '+02:00'."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() / _DAY_SECONDS + _UNIX_EPOCH_MJD


def mjd_to_isot_ms(mjd: float) -> str:
    """Convert a Modified Julian Date to ``YYYY-MM-DDTHH:MM:SS.sss`` (UTC).

    The time is first taken to the nearest microsecond, then digits past the
    millisecond are dropped. Converting a time to an MJD and back can therefore
    come back one millisecond early, as an MJD float holds only about ten
    microseconds of precision today.

    Parameters
    ----------
    mjd : float
        The Modified Julian Date (any real number: int, float, NumPy scalar
        or 0-d array).

    Returns
    -------
    str
        The UTC time, with millisecond precision and no zone.

    Raises
    ------
    TypeError
        If ``mjd`` is not a real number.
    ValueError
        If ``mjd`` is NaN.
    OverflowError
        If ``mjd`` is infinite or outside the years 1 to 9999.

    Examples
    --------
    >>> mjd_to_isot_ms(60310.5)
    '2024-01-01T12:00:00.000'
    >>> mjd_to_isot_ms(40587)
    '1970-01-01T00:00:00.000'
    """
    if not isinstance(mjd, numbers.Real):
        # A NumPy 0-d array (what many array operations give) is a number too.
        try:
            if isinstance(mjd, str | bytes):
                raise TypeError
            mjd = float(mjd)
        except (TypeError, ValueError):
            raise TypeError(
                f"mjd_to_isot_ms: mjd must be a real number, not {type(mjd).__name__}."
            ) from None
    offset = (mjd - _UNIX_EPOCH_MJD) * _DAY_SECONDS
    if offset != offset:
        raise ValueError("mjd_to_isot_ms: mjd is NaN; expected a finite Modified Julian Date.")
    try:
        moment = _UNIX_EPOCH + timedelta(seconds=offset)
    except OverflowError:
        raise OverflowError(
            f"mjd_to_isot_ms: MJD {mjd!r} is outside the years 1 to 9999 (MJD -678575 to 2973483)."
        ) from None
    return _milliseconds(moment)


def datetime_to_isot_ms(dt: datetime) -> str:
    """Format a datetime as ``YYYY-MM-DDTHH:MM:SS.sss``.

    The time is written as it reads: a time zone is neither converted nor
    shown (convert to UTC first when needed). Digits past the millisecond are
    dropped, not rounded. A ``date`` is taken as its midnight.

    Parameters
    ----------
    dt : datetime
        The time.

    Returns
    -------
    str
        The time with millisecond precision.

    Raises
    ------
    TypeError
        If ``dt`` is not a ``datetime`` (or ``date``).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> datetime_to_isot_ms(datetime(2024, 1, 1, 12, 0, 0, 999999, tzinfo=timezone.utc))
    '2024-01-01T12:00:00.999'
    """
    if not isinstance(dt, date):
        raise TypeError(
            f"datetime_to_isot_ms: dt must be a datetime such as "
            f"datetime(2024, 1, 1, 12, 0), not {type(dt).__name__}."
        )
    return _milliseconds(dt)

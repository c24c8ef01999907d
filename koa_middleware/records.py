"""Validation and normalization of calibration records.

One place for the record rules of PROTOCOL.md, shared by the client store and
the archive service: ids, file names, column names, timestamps, versions,
booleans and checksums. Every function raises
:class:`~koa_middleware.errors.InvalidRecordError` with a message that says
what to fix.

Examples
--------
>>> from koa_middleware.records import normalize_timestamp, validate_filename
>>> normalize_timestamp("Thu, 12 Feb 2026 00:00:00 GMT")
'2026-02-12T00:00:00.000'
>>> validate_filename("dark_001.fits")
'dark_001.fits'
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import InvalidRecordError
from .timestamps import _ISO_RE, normalize_timestamp, utc_now  # noqa: F401 - part of the rules

logger = logging.getLogger(__name__)

#: Fields every record must carry locally.
LOCAL_REQUIRED_FIELDS = ("id", "filename", "cal_type", "datetime_obs")
#: Fields every record must carry on the archive (PROTOCOL.md, Records).
ARCHIVE_REQUIRED_FIELDS = LOCAL_REQUIRED_FIELDS + ("origin", "cal_version")
#: Fields the archive sets itself and never takes from a client.
#: Fields of a record's life on the archive: when it was first published, and when and
#: why it was retracted. The archive sets them; a local database keeps them beside the
#: record (so a record keeps the shape pipelines know).
LIFECYCLE_FIELDS = ("published_at", "retracted_at", "retract_reason")
SERVER_FIELDS = ("last_updated", "seq", *LIFECYCLE_FIELDS)
#: The longest retraction reason a record may carry.
MAX_REASON_CHARS = 2000
#: Columns whose values are booleans stored as 0/1.
BOOLEAN_COLUMNS = frozenset({"master_cal"})

MAX_VERSION = 999
MAX_FILENAME_BYTES = 255

_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_MD5_RE = re.compile(r"^[0-9a-f]{32}\Z")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_VERSION_RE = re.compile(r"^\d{3}\Z")
# C0 and C1 controls, DEL, and the bidirectional overrides and isolates that make a
# name display as another.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# The same, less the tab: what no text shared through the archive may hold, since a
# terminal acts on it (escape sequences, a line rewritten, text shown reversed).
_TEXT_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: The integers SQLite stores (64-bit signed); a larger one cannot be stored by a client.
MIN_INTEGER, MAX_INTEGER = -(2**63), 2**63 - 1
_VALID_COLUMNS: set[str] = set()  # names already checked, for speed
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def validate_column_name(name: Any) -> str:
    """Check that ``name`` may be used as a column name in SQL.

    Parameters
    ----------
    name : Any
        The candidate column name.

    Returns
    -------
    str
        ``name`` unchanged.

    Raises
    ------
    InvalidRecordError
        If ``name`` does not match ``^[A-Za-z_][A-Za-z0-9_]{0,62}$``.

    Examples
    --------
    >>> validate_column_name("mjd_start")
    'mjd_start'
    """
    if name in _VALID_COLUMNS:
        return name
    if not isinstance(name, str) or not _COLUMN_RE.match(name):
        raise InvalidRecordError(
            f"Invalid column name {name!r}: a column name must start with a letter or "
            "underscore and hold only letters, digits and underscores (at most 63). "
            "Rename the field."
        )
    if len(_VALID_COLUMNS) < 10_000:
        _VALID_COLUMNS.add(name)
    return name


class CalId(str):
    """A calibration id that passed :func:`validate_cal_id`: a canonical UUID string.

    Only :func:`validate_cal_id` makes one. An id is checked once where it comes
    in (user input, an archive answer, a read-only cache) and carried inside as
    a ``CalId``, which every later check accepts as it is.

    Examples
    --------
    >>> cal_id = validate_cal_id("1B4E28BA-2FA1-4D2B-883F-0016D3CCA427")
    >>> isinstance(cal_id, CalId), cal_id
    (True, '1b4e28ba-2fa1-4d2b-883f-0016d3cca427')
    """

    __slots__ = ()


def validate_cal_id(cal_id: Any) -> CalId:
    """Check and normalize a calibration id (a UUID string, lower case).

    Raises
    ------
    InvalidRecordError
        If ``cal_id`` is not a UUID in its canonical hyphenated form.

    Examples
    --------
    >>> validate_cal_id("1B4E28BA-2FA1-4D2B-883F-0016D3CCA427")
    '1b4e28ba-2fa1-4d2b-883f-0016d3cca427'
    """
    if type(cal_id) is CalId:
        return cal_id
    if isinstance(cal_id, str) and _UUID_RE.match(cal_id):
        return CalId(cal_id)
    if isinstance(cal_id, uuid.UUID):
        return CalId(cal_id)
    if isinstance(cal_id, str) and len(cal_id) == 36:
        try:
            return CalId(uuid.UUID(cal_id))
        except ValueError:
            pass
    raise InvalidRecordError(
        f"Invalid calibration id {cal_id!r}: an id must be a UUID such as "
        "'1b4e28ba-2fa1-4d2b-883f-0016d3cca427'. Leave 'id' out to have one assigned."
    )


def is_cal_id(value: Any) -> bool:
    """Return True when ``value`` is a valid calibration id."""
    try:
        validate_cal_id(value)
    except InvalidRecordError:
        return False
    return True


def new_cal_id() -> str:
    """Return a fresh random calibration id (UUID4)."""
    return str(uuid.uuid4())


def validate_filename(name: Any) -> str:
    """Check that ``name`` is a plain file name that cannot leave its folder.

    Raises
    ------
    InvalidRecordError
        If ``name`` holds a path separator, is ``.`` or ``..``, is empty, holds a
        NUL, a control character (C0 or C1) or a bidirectional override, or is
        longer than 255 bytes in UTF-8.

    Examples
    --------
    >>> validate_filename("../x.fits")
    Traceback (most recent call last):
    ...
    koa_middleware.errors.InvalidRecordError: Invalid file name '../x.fits': ...
    """
    problem = _filename_problem(name)
    if problem:
        raise InvalidRecordError(
            f"Invalid file name {name!r}: {problem}. A calibration file name must be a "
            "plain name such as 'hispec_dark_001.fits'."
        )
    return name


def is_filename(value: Any) -> bool:
    """Return True when ``value`` is a plain file name (see :func:`validate_filename`).

    Examples
    --------
    >>> is_filename("dark_001.fits"), is_filename("../x.fits")
    (True, False)
    """
    return _filename_problem(value) is None


def _filename_problem(name: Any) -> str | None:
    if not isinstance(name, str):
        return "it is not a string"
    if name in ("", ".", ".."):
        return "it is empty, '.' or '..'"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if _CONTROL_RE.search(name):
        return "it holds a NUL, a control character or a bidirectional override"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:
        return f"it is longer than {MAX_FILENAME_BYTES} bytes"
    return None


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match) -> str:
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with every control character and bidirectional override shown escaped.

    The one guard of text shown to people (``koa-cal``'s output, the web
    pages): values come from the archive and from other people's records, and
    an escape sequence in them would rewrite the reader's terminal. Each such
    character is written as Python writes it in a string (``\\x1b``,
    ``\\u202e``). JSON output needs none of this: JSON escapes them itself.

    Parameters
    ----------
    text : str
        What is about to be printed.
    keep : str
        Characters left as they are, e.g. ``"\\n"`` for a text of several lines
        that the command itself built.

    Returns
    -------
    str
        The text, safe to print.

    Examples
    --------
    >>> escape_controls("\\x1b[2JFAKE: all good")
    '\\\\x1b[2JFAKE: all good'
    >>> print(escape_controls("a\\u202eb\\nc", keep="\\n"))
    a\\u202eb
    c
    """
    if not _CONTROL_RE.search(text):
        return text
    if not keep:
        return _CONTROL_RE.sub(_escaped, text)
    return _CONTROL_RE.sub(lambda m: m.group() if m.group() in keep else _escaped(m), text)


def control_character_problem(text: str) -> str | None:
    """Say which control character ``text`` holds, or return None.

    The rule of shared text (every string column of a record the archive
    publishes, and a retraction's reason): no C0 control but the tab, no DEL,
    no C1 control, and no bidirectional override or isolate (U+202A-U+202E,
    U+2066-U+2069). A terminal acts on those instead of showing them.

    It is not part of :func:`validate_record`: a client keeps storing what an
    older archive sent, or what a pipeline registered locally, and shows it
    escaped. The archive refuses such text; so do retraction reasons, here
    and there (:func:`retraction_reason`).

    Parameters
    ----------
    text : str
        The text.

    Returns
    -------
    str | None
        E.g. ``"it holds the control character U+001B"``, or None.

    Examples
    --------
    >>> control_character_problem("hot pixels\\tin row 4") is None
    True
    >>> control_character_problem("\\x1b[2Jall good")
    'it holds the control character U+001B'
    """
    found = _TEXT_CONTROL_RE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "it holds a NUL character"
    return f"it holds the control character U+{ord(found.group()):04X}"


def safe_path(directory: str | Path, filename: str) -> Path:
    """Join a validated file name to ``directory``, refusing anything that leaves it.

    This is the one function through which every path built from a record goes.

    Parameters
    ----------
    directory : str | Path
        The folder the file must live in (e.g. ``calibrations/<instrument>``).
    filename : str
        The file name from a record.

    Returns
    -------
    Path
        ``directory / filename``, absolute.

    Raises
    ------
    InvalidRecordError
        If ``filename`` is not a plain name, or the joined path resolves outside
        ``directory``.
    """
    validate_filename(filename)
    if isinstance(directory, Path) and directory.is_absolute():
        base = directory  # the cache's own folders: already absolute (a hot path)
    else:
        base = Path(directory).absolute()
    path = base / filename
    # A plain name has one part; anything else would leave ``directory``.
    if path.name != filename:
        raise InvalidRecordError(f"Invalid file name {filename!r}: it leaves {base}.")
    return path


def split_lifecycle(record: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate a record from its lifecycle fields (:data:`LIFECYCLE_FIELDS`), checked.

    Returns
    -------
    tuple[dict, dict]
        The record without them, and ``published_at``, ``retracted_at`` (None
        when live) and ``retract_reason`` of those it had.

    Raises
    ------
    InvalidRecordError
        If a time is not a timestamp, or a reason is not text of at most 2,000
        characters.

    Examples
    --------
    >>> split_lifecycle({"id": "x", "retracted_at": "2026-01-02", "retract_reason": "bad"})
    ({'id': 'x'}, {'retracted_at': '2026-01-02T00:00:00.000', 'retract_reason': 'bad'})
    """
    rest = {k: v for k, v in record.items() if k not in LIFECYCLE_FIELDS}
    info: dict[str, Any] = {}
    for name in ("published_at", "retracted_at"):
        if name in record:
            value = record[name]
            info[name] = None if value is None else normalize_timestamp(value, name)
    if "retract_reason" in record:
        reason = record["retract_reason"]
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
            raise InvalidRecordError(
                f"Invalid retract_reason {str(reason)[:40]!r}...: give text of at most 2,000 "
                "characters."
            )
        info["retract_reason"] = reason
    return rest, info


def retraction_reason(reason: Any) -> str:
    """Check and tidy the reason of a retraction: text, whitespace collapsed, 1-2,000 characters.

    Raises
    ------
    InvalidRecordError
        If the reason is missing, empty, too long, or holds a control character
        (see :func:`control_character_problem`).

    Examples
    --------
    >>> retraction_reason("  hot pixels   in the lower half ")
    'hot pixels in the lower half'
    """
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRecordError(
            "A retraction needs a reason, e.g. reason='hot pixels in the lower half'."
        )
    text = " ".join(reason.split())
    if len(text) > MAX_REASON_CHARS:
        raise InvalidRecordError(
            f"The reason is {len(text)} characters long; keep it under {MAX_REASON_CHARS:,}."
        )
    problem = control_character_problem(text)
    if problem:
        raise InvalidRecordError(
            f"Invalid retract_reason: {problem} (terminals act on control characters and "
            "bidirectional overrides); give plain text."
        )
    return text


def format_version(number: int) -> str:
    """Format a version number as three digits, refusing anything past 999.

    Raises
    ------
    InvalidRecordError
        If ``number`` is not within 1..999.

    Examples
    --------
    >>> format_version(7)
    '007'
    """
    if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= MAX_VERSION:
        raise InvalidRecordError(
            f"Invalid cal_version {number!r}: versions run from '001' to '999'."
        )
    return f"{number:03d}"


def normalize_version(value: Any) -> str:
    """Normalize a ``cal_version`` given as ``'7'``, ``7`` or ``'007'`` to ``'007'``."""
    if type(value) is str and _VERSION_RE.match(value) and value != "000":
        return value
    try:
        number = int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None:
        raise InvalidRecordError(
            f"Invalid cal_version {value!r}: versions run from '001' to '999'."
        )
    return format_version(number)


def parse_bool(text: str) -> bool | None:
    """Read a yes/no word: true/false, 1/0, yes/no, on/off, t/f, y/n, in any case.

    The one reading of such words in the package: record fields, environment
    variables and options all go through it.

    Returns
    -------
    bool | None
        The flag, or None when ``text`` is none of those words.

    Examples
    --------
    >>> parse_bool(" Yes "), parse_bool("0"), parse_bool("enabled")
    (True, False, None)
    """
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def normalize_bool(value: Any, field: str = "value") -> int:
    """Normalize ``true``/``false``, ``1``/``0`` (and yes/no, on/off) to 1 or 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    flag = parse_bool(value) if isinstance(value, str) else None
    if flag is None:
        raise InvalidRecordError(f"Invalid {field} {value!r}: use true/false or 1/0.")
    return int(flag)


def validate_md5(value: Any) -> str:
    """Check and lower-case an MD5 hex digest."""
    if isinstance(value, str) and _MD5_RE.match(value.lower()):
        return value.lower()
    raise InvalidRecordError(f"Invalid file_md5 {value!r}: it must be 32 hexadecimal digits.")


def _normalize_origin(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRecordError(f"Invalid origin {value!r}: use a word such as 'KECK'.")
    return value.strip().upper()


def _normalize_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INTEGER:
        raise InvalidRecordError(
            f"Invalid file_size {value!r}: use a byte count from 0 to {MAX_INTEGER} "
            "(a signed 64-bit integer)."
        )
    return value


def _check_number(key: str, value: int | float) -> int | float:
    """Refuse numbers a client's SQLite cannot store as they are."""
    if isinstance(value, int):
        if not MIN_INTEGER <= value <= MAX_INTEGER:
            raise InvalidRecordError(
                f"Invalid value for {key!r}: {value} does not fit in 64 bits (from "
                f"{MIN_INTEGER} to {MAX_INTEGER}); store it as a string or a float."
            )
    elif not math.isfinite(value):
        raise InvalidRecordError(
            f"Invalid value for {key!r}: {value} is not a finite number; use null instead."
        )
    return value


#: How each field with a rule of its own is normalized.
_NORMALIZERS = {
    "id": validate_cal_id,
    "filename": validate_filename,
    "datetime_obs": lambda v: normalize_timestamp(v, "datetime_obs"),
    "last_updated": lambda v: normalize_timestamp(v, "last_updated"),
    "cal_version": normalize_version,
    "origin": _normalize_origin,
    "file_md5": validate_md5,
    "file_size": _normalize_size,
    **{name: (lambda v, n=name: normalize_bool(v, n)) for name in BOOLEAN_COLUMNS},
}


def _normalize_value(key: str, value: Any) -> Any:
    if value is None:
        return None
    normalize = _NORMALIZERS.get(key)
    if normalize is not None:
        return normalize(value)
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is float:
        return _check_number(key, value)
    if kind is bool:
        return int(value)
    if isinstance(value, dict | list | tuple | set):
        raise InvalidRecordError(
            f"Invalid value for {key!r}: nested values ({type(value).__name__}) are not "
            "allowed; store strings, numbers, booleans or null."
        )
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return _check_number(key, value)
    raise InvalidRecordError(
        f"Invalid value for {key!r}: {type(value).__name__} is not a string, number, "
        "boolean or null."
    )


def validate_record(
    record: Mapping[str, Any],
    required: Iterable[str] = LOCAL_REQUIRED_FIELDS,
    drop: Iterable[str] = (),
) -> dict[str, Any]:
    """Validate a record and return a normalized copy.

    Parameters
    ----------
    record : Mapping
        The calibration record.
    required : iterable of str
        Fields that must be present and not null.
    drop : iterable of str
        Fields to leave out of the copy (e.g. server-set fields).

    Returns
    -------
    dict
        A new dict with normalized values.

    Raises
    ------
    InvalidRecordError
        If the record is not a mapping, misses a required field, or breaks a rule.

    Examples
    --------
    >>> rec = validate_record({"id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427",
    ...     "filename": "d.fits", "cal_type": "dark", "datetime_obs": "2024-01-01 00:00:00",
    ...     "master_cal": "true"})
    >>> rec["datetime_obs"], rec["master_cal"]
    ('2024-01-01T00:00:00.000', 1)
    """
    if not isinstance(record, Mapping):
        raise InvalidRecordError(
            f"A calibration record must be a dict, not {type(record).__name__}."
        )
    skip = set(drop)
    normalized: dict[str, Any] = {}
    for key, value in record.items():
        if key in skip:
            continue
        if key not in _VALID_COLUMNS:
            validate_column_name(key)
        normalized[key] = _normalize_value(key, value)
    if len({key.lower() for key in normalized}) != len(normalized):
        _refuse_case_clash(normalized)
    missing = [field for field in required if normalized.get(field) is None]
    if missing:
        raise InvalidRecordError(
            f"Calibration record {record.get('filename') or record.get('id') or ''!s} "
            f"is missing required field(s) {', '.join(missing)}; add them to the record."
        )
    return normalized


def _refuse_case_clash(record: Mapping[str, Any]) -> None:
    """Raise for two fields whose names differ only by case (one column in SQLite)."""
    seen: dict[str, str] = {}
    for key in record:
        other = seen.setdefault(key.lower(), key)
        if other != key:
            raise InvalidRecordError(
                f"Fields {other!r} and {key!r} differ only by case; column names are not "
                "case-sensitive in SQLite, so a record may hold only one of them. Rename one."
            )


def ascii_int(text: str | None, signed: bool = False) -> int | None:
    """Read a whole number of ASCII digits within 64 bits; None for anything else.

    For numbers in headers and query strings. Unlike ``int()``, it refuses ``_``
    separators, other digits (``'\\u00b2'``), surrounding space and a missing
    value, and it never converts more than 19 significant digits (``int()`` of
    more than 4,300 digits raises, and a longer number is out of range anyway).

    Parameters
    ----------
    text : str | None
        The text, e.g. a header or query parameter value.
    signed : bool
        Accept a leading ``-`` or ``+``.

    Returns
    -------
    int | None
        The number, or None.

    Examples
    --------
    >>> ascii_int("0042"), ascii_int("9" * 5000), ascii_int("-1"), ascii_int("-1", signed=True)
    (42, None, None, -1)
    >>> ascii_int("\\u00b2"), ascii_int(" 7"), ascii_int(None)
    (None, None, None)
    """
    if not text:
        return None
    digits = text[1:] if signed and text[:1] in ("-", "+") else text
    if not digits or not (digits.isascii() and digits.isdigit()):
        return None
    significant = digits.lstrip("0") or "0"
    if len(significant) > 19:
        return None
    number = -int(significant) if text[:1] == "-" and digits is not text else int(significant)
    return number if -MAX_INTEGER <= number <= MAX_INTEGER else None

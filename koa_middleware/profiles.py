"""Instrument profiles: what the store, ``koa-cal`` and ``koa-archive`` know of an instrument.

A profile says, for one instrument:

- the version-family columns per ``cal_type`` (and a default for other types);
- the FITS header map: record column -> header keyword(s), tried in order (the
  shape of :data:`koa_middleware.fits.DEFAULT_HEADER_MAP`), and the type of
  the columns it names (``str``, ``int``, ``float`` or ``bool``);
- the calibration types it knows (empty: any);
- the columns a record of each type must have;
- how many nights without a record make a gap in the coverage map of the
  web pages (``gap_nights``).

:func:`load_profile` finds the profile of an instrument, first match wins:

1. the TOML file named by ``KOA_INSTRUMENT_PROFILE``, if its ``instrument`` is
   this one;
2. an entry point named after the instrument in the group
   ``koa_middleware.instruments`` (an :class:`InstrumentProfile`, or a callable
   returning one), so an instrument package ships its own; one from another
   distribution wins over the examples this package registers (``hispec``,
   ``liger``);
3. the generic profile (families ``cal_type`` + ``datetime_obs``).

This module imports only the standard library and the shared record rules, so
the archive (which never imports the client store) uses it too.

Examples
--------
>>> profile = load_profile("hispec")  # doctest: +SKIP
>>> profile.family_columns_for("dark")  # doctest: +SKIP
['cal_type', 'spectrograph', 'instrument_era', 'datetime_obs']
>>> profile.source  # doctest: +SKIP
'entry point koa_middleware.profiles:HISPEC'
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import stat
import sys
import threading
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .bounded_read import FileRefused, read_regular_file
from .errors import ConfigurationError, InvalidRecordError
from .records import normalize_bool, validate_column_name

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_GAP_NIGHTS",
    "DEFAULT_INSTRUMENTS",
    "ENTRY_POINT_GROUP",
    "PROFILE_ENV",
    "GENERIC",
    "HISPEC",
    "LIGER",
    "InstrumentProfile",
    "known_instruments",
    "load_profile",
    "profile_from_mapping",
    "profile_from_toml",
]

ENTRY_POINT_GROUP = "koa_middleware.instruments"
#: A profile file larger than this is refused (a profile is a few KiB).
MAX_PROFILE_BYTES = 1 << 20
#: Inline arrays and tables nest at most this deep in a profile.
MAX_PROFILE_DEPTH = 32
_TOML_BRACKETS = re.compile(r"[\[\]{}]")
PROFILE_ENV = "KOA_INSTRUMENT_PROFILE"
DEFAULT_SOURCE = "built-in default"
DEFAULT_FAMILY = ("cal_type", "datetime_obs")
#: Runs of more nights than this without a record are gaps, unless a profile says otherwise.
DEFAULT_GAP_NIGHTS = 7
#: The longest gap threshold a profile may set (a year).
MAX_GAP_NIGHTS = 365
_OWN_DISTRIBUTION = "koa_middleware"
_TYPES: dict[str, Callable[[Any], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": lambda value: bool(normalize_bool(value)),
}


def _columns(names: Any, where: str) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ConfigurationError(f"{where} must be a list of column names, got {names!r}.")
    try:
        return tuple(validate_column_name(name) for name in names)
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def _family(names: Any, where: str) -> tuple[str, ...]:
    columns = _columns(names, where)
    if "cal_type" not in columns:
        raise ConfigurationError(f"{where} must include 'cal_type' (got {list(columns)}).")
    if len(set(columns)) != len(columns):
        raise ConfigurationError(f"{where} names a column twice: {list(columns)}.")
    return columns


@dataclass(frozen=True)
class InstrumentProfile:
    """What the store, ``koa-cal`` and ``koa-archive`` know of one instrument.

    Parameters
    ----------
    instrument : str
        The instrument name, lower case (``'hispec'``).
    default_family : tuple of str
        Version-family columns of a ``cal_type`` that ``families`` does not name.
    families : Mapping[str, tuple of str]
        ``cal_type`` -> its version-family columns.
    header_map : Mapping[str, tuple of str]
        Record column -> FITS keywords, tried in order; changes to
        :data:`koa_middleware.fits.DEFAULT_HEADER_MAP`.
    column_types : Mapping[str, str]
        Column -> ``'str'``, ``'int'``, ``'float'`` or ``'bool'``.
    cal_types : tuple of str
        The calibration types the instrument knows; empty accepts any.
    required : Mapping[str, tuple of str]
        ``cal_type`` -> the columns its records must have.
    gap_nights : int
        The coverage map of the web pages flags runs of more nights than this
        (0 to :data:`MAX_GAP_NIGHTS`) without a record of a type as gaps; an
        instrument observed only some nights a month sets a larger one. A page's
        ``gap_nights`` parameter overrides it.
    source : str
        Where the profile came from (set by :func:`load_profile`).

    Raises
    ------
    ConfigurationError
        If a column name is invalid, a family lacks ``cal_type`` or a type is unknown.

    Examples
    --------
    >>> p = InstrumentProfile("kpf", families={"dark": ("cal_type", "ccd", "datetime_obs")})
    >>> p.family_columns_for("dark"), p.family_columns_for("flat")
    (['cal_type', 'ccd', 'datetime_obs'], ['cal_type', 'datetime_obs'])
    """

    instrument: str
    default_family: tuple[str, ...] = DEFAULT_FAMILY
    families: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    header_map: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    column_types: Mapping[str, str] = field(default_factory=dict)
    cal_types: tuple[str, ...] = ()
    required: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    gap_nights: int = DEFAULT_GAP_NIGHTS
    source: str = DEFAULT_SOURCE

    def __post_init__(self) -> None:
        name = str(self.instrument).strip().lower()
        try:
            validate_column_name(name)
        except ValueError:
            raise ConfigurationError(
                f"Invalid instrument name {self.instrument!r} in a profile: use letters, "
                "digits and underscores."
            ) from None
        set_ = object.__setattr__  # frozen: normalize once, here
        set_(self, "instrument", name)
        set_(self, "default_family", _family(self.default_family, "families.default"))
        set_(self, "families", {
            str(t).lower(): _family(cols, f"families.{t}") for t, cols in self.families.items()
        })  # fmt: skip
        header_map = {}
        for column, keywords in self.header_map.items():
            if isinstance(keywords, str):
                keywords = (keywords,)
            if (
                not isinstance(keywords, Sequence)
                or not keywords
                or not all(isinstance(k, str) and k.strip() for k in keywords)
            ):
                raise ConfigurationError(
                    f"header_map.{column} must be a FITS keyword or a list of keywords."
                )
            try:
                validate_column_name(column)
            except ValueError as exc:
                raise ConfigurationError(f"header_map: {exc}") from None
            header_map[column] = tuple(k.strip().upper() for k in keywords)
        set_(self, "header_map", header_map)
        for column, type_name in self.column_types.items():
            if type_name not in _TYPES:
                raise ConfigurationError(
                    f"The type of {column!r} is {type_name!r}; use one of {', '.join(_TYPES)}."
                )
        set_(self, "column_types", dict(self.column_types))
        set_(self, "cal_types", tuple(str(t).lower() for t in self.cal_types))
        set_(self, "required", {
            str(t).lower(): _columns(cols, f"required.{t}") for t, cols in self.required.items()
        })  # fmt: skip
        gap = self.gap_nights
        if isinstance(gap, bool) or not isinstance(gap, int) or not 0 <= gap <= MAX_GAP_NIGHTS:
            raise ConfigurationError(
                f"gap_nights must be a whole number of nights from 0 to {MAX_GAP_NIGHTS}, "
                f"got {gap!r}."
            )

    def family_columns_for(self, cal_type: str) -> list[str]:
        """The version-family columns of ``cal_type``.

        Examples
        --------
        >>> HISPEC.family_columns_for("arc")
        ['cal_type', 'spectrograph', 'instrument_era', 'datetime_obs']
        """
        return list(self.families.get(str(cal_type).lower(), self.default_family))

    def required_for(self, cal_type: str) -> list[str]:
        """The columns a record of ``cal_type`` must have (beyond the record rules).

        Examples
        --------
        >>> InstrumentProfile("kpf", required={"dark": ("ccd",)}).required_for("dark")
        ['ccd']
        """
        return list(self.required.get(str(cal_type).lower(), ()))

    def with_source(self, source: str) -> InstrumentProfile:
        """A copy of the profile that says it came from ``source``."""
        return dataclasses.replace(self, source=source)

    def check_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``record`` with its typed columns converted; refuse what breaks the profile.

        Raises
        ------
        InvalidRecordError
            If the ``cal_type`` is unknown to the profile, a required column is
            missing, or a value does not convert to its column's type.

        Examples
        --------
        >>> LIGER.check_record({"cal_type": "dark", "detector": "imager", "exptime": "30"})
        {'cal_type': 'dark', 'detector': 'imager', 'exptime': 30.0}
        """
        checked = dict(record)
        cal_type = str(checked.get("cal_type") or "").lower()
        if cal_type and self.cal_types and cal_type not in self.cal_types:
            raise InvalidRecordError(
                f"cal_type {cal_type!r} is not one the {self.instrument} profile knows "
                f"({', '.join(self.cal_types)}); fix the record or the profile ({self.source})."
            )
        missing = [c for c in self.required_for(cal_type) if checked.get(c) in (None, "")]
        if missing:
            raise InvalidRecordError(
                f"A {cal_type} record of {self.instrument} must have {', '.join(missing)} "
                f"(profile: {self.source}); add them to the record or the FITS header."
            )
        for column, type_name in self.column_types.items():
            value = checked.get(column)
            if value is None or value == "":
                continue
            try:
                checked[column] = _TYPES[type_name](value)
            except (TypeError, ValueError):
                raise InvalidRecordError(
                    f"{column}={value!r} is not a {type_name}, as the {self.instrument} "
                    f"profile requires ({self.source}); fix the value."
                ) from None
        return checked


#: The profile of an instrument that has none: today's defaults.
GENERIC = InstrumentProfile("generic")

_HISPEC_TYPES = ("bias", "dark", "flat", "arc", "wavecal", "trace", "badpix")

#: HISPEC: two spectrographs (yJ, HK) and instrument eras, each its own version family.
#: Every type requires the spectrograph (``SPECTROG``): the default selectors
#: match on it, so a calibration without one could never be chosen.
HISPEC = InstrumentProfile(
    "hispec",
    default_family=("cal_type", "spectrograph", "instrument_era", "datetime_obs"),
    header_map={"spectrograph": ("SPECTROG", "SPEC"), "instrument_era": ("INSTERA", "ERA")},
    column_types={"spectrograph": "str", "instrument_era": "str", "exptime": "float"},
    cal_types=_HISPEC_TYPES,
    required={cal_type: ("spectrograph",) for cal_type in _HISPEC_TYPES},
)

#: Liger: an imager and an IFS, each detector and observing mode its own version family.
LIGER = InstrumentProfile(
    "liger",
    default_family=("cal_type", "detector", "mode", "datetime_obs"),
    header_map={"detector": ("DETECTOR", "CAMERA"), "mode": ("OBSMODE", "MODE")},
    column_types={"detector": "str", "mode": "str", "exptime": "float"},
    cal_types=("bias", "dark", "flat", "arc", "sky", "badpix"),
)


#: The instruments whose profiles this package ships: what ``koa-archive`` serves
#: unless told otherwise (``--instrument``). The only definition; import it from here.
DEFAULT_INSTRUMENTS: tuple[str, ...] = (HISPEC.instrument, LIGER.instrument)


def profile_from_mapping(data: Mapping[str, Any], source: str) -> InstrumentProfile:
    """Build a profile from the tables of a TOML file (or any mapping like it).

    The mapping holds ``instrument``, and optionally ``cal_types`` (a list),
    ``families`` (``default`` and ``<cal_type>``: lists of columns),
    ``header_map`` (column -> keyword, list of keywords, or
    ``{keywords = [...], type = "float"}``) and ``required`` (``<cal_type>``:
    list of columns) and ``gap_nights`` (a whole number).

    Raises
    ------
    ConfigurationError
        Naming ``source`` and the problem.

    Examples
    --------
    >>> p = profile_from_mapping({"instrument": "kpf", "families": {"default": [
    ...     "cal_type", "ccd", "datetime_obs"]}, "header_map": {"ccd": {
    ...     "keywords": ["CCDNAME"], "type": "str"}}}, "example")
    >>> p.family_columns_for("dark"), dict(p.header_map), p.source
    (['cal_type', 'ccd', 'datetime_obs'], {'ccd': ('CCDNAME',)}, 'example')
    """
    try:
        known = {"instrument", "cal_types", "families", "header_map", "required", "gap_nights"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(known))}"
            )
        if not isinstance(data.get("instrument"), str):
            raise ConfigurationError('no instrument: add instrument = "name" at the top')
        for table in ("families", "header_map", "required"):
            if not isinstance(data.get(table, {}), Mapping):
                raise ConfigurationError(f"[{table}] must be a table")
        families = dict(data.get("families", {}))
        header_map: dict[str, Any] = {}
        types: dict[str, str] = {}
        for column, entry in data.get("header_map", {}).items():
            if isinstance(entry, Mapping):
                if set(entry) - {"keywords", "type"} or "keywords" not in entry:
                    raise ConfigurationError(
                        f"header_map.{column} must be {{keywords = [...], type = ...}}"
                    )
                header_map[column] = entry["keywords"]
                if "type" in entry:
                    types[column] = entry["type"]
            else:
                header_map[column] = entry
        cal_types = data.get("cal_types", [])
        if isinstance(cal_types, str) or not isinstance(cal_types, Sequence):
            raise ConfigurationError("cal_types must be a list of calibration types")
        return InstrumentProfile(
            instrument=data["instrument"],
            default_family=families.pop("default", DEFAULT_FAMILY),
            families=families,
            header_map=header_map,
            column_types=types,
            cal_types=tuple(cal_types),
            required=dict(data.get("required", {})),
            gap_nights=data.get("gap_nights", DEFAULT_GAP_NIGHTS),
            source=source,
        )
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"Instrument profile {source}: {exc}") from None


def profile_from_toml(path: str | os.PathLike) -> InstrumentProfile:
    """Read a profile from a TOML file.

    Raises
    ------
    ConfigurationError
        If the file cannot be read, is a link or not a regular file (a FIFO, a
        device), is larger than :data:`MAX_PROFILE_BYTES`, is not UTF-8, nests
        deeper than :data:`MAX_PROFILE_DEPTH`, is not TOML, or does not
        describe a profile; the message names the file and the problem.

    Examples
    --------
    >>> profile_from_toml("/etc/koa/kpf.toml").instrument  # doctest: +SKIP
    'kpf'
    """
    path = Path(path).expanduser()
    source = f"{PROFILE_ENV}={path}"
    try:
        data = read_regular_file(path, MAX_PROFILE_BYTES)
    except FileRefused as exc:
        raise ConfigurationError(
            f"The instrument profile {path} is refused: it {exc.problem}; point "
            f"{PROFILE_ENV} at a TOML file of at most {MAX_PROFILE_BYTES:,} bytes."
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot read the instrument profile {path} ({exc.strerror or exc}); "
            f"fix {PROFILE_ENV} or the file."
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"The instrument profile {path} is not UTF-8 text (byte {exc.start}: "
            f"{data[exc.start : exc.start + 1]!r}), as TOML must be; save it as UTF-8."
        ) from None
    if _toml_nesting_exceeds(text, MAX_PROFILE_DEPTH):
        raise ConfigurationError(
            f"The instrument profile {path} nests arrays or tables more than "
            f"{MAX_PROFILE_DEPTH} levels deep, which no profile does; fix the file."
        )
    try:
        parsed = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigurationError(
            f"The instrument profile {path} is not valid TOML ({exc}); fix the file."
        ) from None
    return profile_from_mapping(parsed, source)


def _toml_nesting_exceeds(text: str, limit: int) -> bool:
    """Whether TOML ``text`` nests inline arrays or tables more than ``limit`` deep.

    Brackets inside strings and comments are counted too, so a profile that
    holds many is refused; none of the profile's values needs them.
    """
    depth = 0
    for char in _TOML_BRACKETS.findall(text):
        depth = depth + 1 if char in "[{" else max(depth - 1, 0)
        if depth > limit:
            return True
    return False


#: Profiles loaded before, by what they were loaded from: a TOML file's path and
#: stat, or an instrument's name and the state of the installed distributions.
#: Opening a store then costs a few stats instead of a scan of every installed
#: distribution's metadata (milliseconds, more where many are installed).
_LOADED: dict[tuple, InstrumentProfile | None] = {}
_LOADED_LOCK = threading.Lock()
_LOADED_MAX = 64


def _remembered(
    key: tuple, load: Callable[[], InstrumentProfile | None]
) -> InstrumentProfile | None:
    """``load()``, or what it gave before under ``key``; a failure is never kept."""
    with _LOADED_LOCK:
        if key in _LOADED:
            return _LOADED[key]
    profile = load()
    with _LOADED_LOCK:
        if len(_LOADED) >= _LOADED_MAX:  # keys of a changed installation are never asked again
            _LOADED.clear()
        _LOADED[key] = profile
    return profile


def _installed_state() -> tuple:
    """What changes when a distribution is installed, upgraded or removed.

    Entry points are read from the ``.dist-info`` folders found on ``sys.path``;
    installing or removing one adds or removes such a folder, which changes the
    modification time of the folder on the path that holds it.
    """
    state = []
    for entry in sys.path:
        try:
            info = os.stat(entry or ".")
        except (OSError, ValueError):
            state.append((entry, None))
            continue
        state.append((entry, info.st_dev, info.st_ino, info.st_mtime_ns, info.st_ctime_ns))
    return tuple(state)


def _toml_profile(path: str) -> InstrumentProfile:
    """:func:`profile_from_toml`, read again only when the file changed (by its stat)."""
    try:
        info = os.lstat(Path(path).expanduser())
    except (OSError, ValueError):
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        return profile_from_toml(path)  # says what is wrong with it
    key = (
        "toml",
        path,
        info.st_dev,
        info.st_ino,
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
    )
    profile = _remembered(key, lambda: profile_from_toml(path))
    assert profile is not None  # profile_from_toml returns one or raises
    return profile


def _from_entry_point(instrument: str) -> InstrumentProfile | None:
    """The profile an installed package registers for ``instrument``, or None.

    The entry points are scanned again only when the installed distributions changed.
    """
    key = ("entry point", instrument, _installed_state())
    return _remembered(key, lambda: _scan_entry_points(instrument))


def _scan_entry_points(instrument: str) -> InstrumentProfile | None:
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == instrument]
    if not found:
        return None
    # An instrument package's own profile wins over the examples shipped here.
    found.sort(key=lambda ep: ep.dist is not None and ep.dist.name == _OWN_DISTRIBUTION)
    entry_point = found[0]
    where = f"entry point {entry_point.value}"
    try:
        loaded = entry_point.load()
        profile = loaded if isinstance(loaded, InstrumentProfile) else loaded()
    except ConfigurationError as exc:
        raise ConfigurationError(f"Instrument profile {where}: {exc}") from None
    except Exception as exc:
        raise ConfigurationError(
            f"The instrument profile {where} (group {ENTRY_POINT_GROUP}) failed to load: "
            f"{type(exc).__name__}: {exc}; fix or uninstall the package that provides it."
        ) from exc
    if not isinstance(profile, InstrumentProfile):
        raise ConfigurationError(
            f"The instrument profile {where} gave {type(profile).__name__}, not an "
            "InstrumentProfile; it must name a profile or a callable returning one."
        )
    if profile.instrument != instrument:
        raise ConfigurationError(
            f"The instrument profile {where} describes {profile.instrument!r}, not "
            f"{instrument!r}; register it under the name {profile.instrument!r}."
        )
    return profile.with_source(where)


def known_instruments() -> list[str]:
    """The instruments that have a profile: entry points, and ``KOA_INSTRUMENT_PROFILE``'s.

    A profile file that cannot be read adds nothing here (:func:`load_profile`
    says what is wrong with it).

    Examples
    --------
    >>> {"hispec", "liger"} <= set(known_instruments())
    True
    """
    names = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    path = os.environ.get(PROFILE_ENV, "").strip()
    if path:
        try:
            names.add(profile_from_toml(path).instrument)
        except ConfigurationError:
            pass
    return sorted(names)


def load_profile(instrument: str) -> InstrumentProfile:
    """Return the profile in force for ``instrument``, and where it came from (``source``).

    Parameters
    ----------
    instrument : str
        The instrument name (any case).

    Returns
    -------
    InstrumentProfile
        From ``KOA_INSTRUMENT_PROFILE`` when that file describes ``instrument``
        (``source`` ``'KOA_INSTRUMENT_PROFILE=/path/x.toml'``), else from the
        entry point of that name (``'entry point module:OBJECT'``), else the
        generic profile under the instrument's name (``'built-in default'``).

    Raises
    ------
    ConfigurationError
        If the TOML file is bad, or an entry point fails to load or gives no profile.

    Examples
    --------
    >>> load_profile("no_such_instrument").source
    'built-in default'
    >>> load_profile("no_such_instrument").family_columns_for("dark")
    ['cal_type', 'datetime_obs']
    """
    name = str(instrument).strip().lower()
    path = os.environ.get(PROFILE_ENV, "").strip()
    if path:
        profile = _toml_profile(path)
        if profile.instrument == name:
            logger.debug("Instrument profile of %s from %s", name, profile.source)
            return profile
        logger.info(
            "%s describes %s, not %s; looking further", profile.source, profile.instrument, name
        )
    profile = _from_entry_point(name)
    if profile is not None:
        logger.debug("Instrument profile of %s from %s", name, profile.source)
        return profile
    return dataclasses.replace(GENERIC, instrument=name, source=DEFAULT_SOURCE)

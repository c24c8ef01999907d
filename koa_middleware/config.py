"""Settings of a calibration store: from arguments, else the environment, else defaults.

Every setting remembers where its value came from, so ``koa-cal config`` can
show it; secrets are masked whenever a setting is shown.

Environment variables
---------------------
============================================= ===========================================
``KOA_INSTRUMENT_NAME``                       instrument (required unless passed)
``KOA_CALIBRATION_CACHE``                     cache folder (required unless passed)
``KOA_LOCAL_CALIBRATION_DATABASE_FILENAME``   ``<instrument>_calibrations.db``
``KOA_LOCAL_CALIBRATION_DATABASE_TABLE_NAME`` ``<instrument>``
``KOA_CALIBRATION_ORIGIN``                    ``LOCAL`` (``KOA_CALIBRATIONS_ORIGIN`` too)
``KOA_USE_CACHED_CALIBRATIONS``               ``true``
``KOA_CALIBRATIONS_URL``                      the Keck calibrations API
``KOA_API_TOKEN``                             none (bearer token for the archive)
``KECK_OBSERVER_EMAIL``                       none (Keck observer login)
``KECK_OBSERVER_PASSWORD``                    none (Keck observer login)
``KOA_PROGRESS``                              ``1`` (progress bars on a terminal)
``KOA_INSTRUMENT_PROFILE``                    none (a TOML instrument profile; see
                                              :mod:`koa_middleware.profiles`)
============================================= ===========================================
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .profiles import load_profile
from .records import validate_column_name

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_URL",
    "Setting",
    "StoreConfig",
    "env_bool",
    "profile_setting",
    "resolve_config",
]

DEFAULT_URL = "https://www3.keck.hawaii.edu/api/calibrations"
DEFAULT_ORIGIN = "LOCAL"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Setting:
    """One resolved setting.

    Attributes
    ----------
    value : Any
        The value in force.
    source : str
        ``'argument'``, ``'environment (NAME)'`` or ``'default'``.
    secret : bool
        Whether to mask the value when showing it.
    """

    value: Any
    source: str
    secret: bool = False

    def shown(self) -> str:
        """The value as it may be displayed: secrets masked."""
        if self.value is None:
            return ""
        return "****" if self.secret else str(self.value)


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean environment variable (1/0, true/false, yes/no, on/off).

    Raises
    ------
    ConfigurationError
        If the variable holds anything else.
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; set it to true or false.")


def _pick(argument: Any, *env_names: str, default: Any = None, secret: bool = False) -> Setting:
    if argument is not None:
        return Setting(argument, "argument", secret)
    for name in env_names:
        value = os.environ.get(name)
        if value:
            return Setting(value, f"environment ({name})", secret)
    return Setting(default, "default", secret)


@dataclass
class StoreConfig:
    """The resolved settings of a :class:`~koa_middleware.store.CalibrationStore`."""

    settings: dict[str, Setting] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["settings"][name].value
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v.shown()!r}" for k, v in self.settings.items())
        return f"StoreConfig({shown})"

    def rows(self) -> list[tuple[str, str, str]]:
        """``(name, shown value, source)`` for every setting; secrets masked."""
        return [(name, s.shown(), s.source) for name, s in self.settings.items()]


def resolve_config(
    instrument_name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_database_filename: str | None = None,
    use_cached: bool | None = None,
    origin: str | None = None,
    url: str | None = None,
    token: str | None = None,
) -> StoreConfig:
    """Resolve every store setting from arguments, the environment and defaults.

    Raises
    ------
    ConfigurationError
        If the instrument or the cache folder is set nowhere, or a value is invalid.

    Examples
    --------
    >>> cfg = resolve_config("HISPEC", "/tmp/koa_cache", use_cached=True)
    >>> cfg.instrument_name, cfg.local_database_filename, cfg.table_name
    ('hispec', 'hispec_calibrations.db', 'hispec')
    """
    s: dict[str, Setting] = {}
    inst = _pick(instrument_name, "KOA_INSTRUMENT_NAME")
    if not inst.value:
        raise ConfigurationError(
            "No instrument name: pass instrument_name='hispec' (or --instrument) "
            "or set KOA_INSTRUMENT_NAME."
        )
    name = str(inst.value).strip().lower()
    try:
        validate_column_name(name)
    except ValueError:
        raise ConfigurationError(
            f"Invalid instrument name {inst.value!r}: use letters, digits and underscores."
        ) from None
    s["instrument_name"] = Setting(name, inst.source)
    cache = _pick(cache_dir, "KOA_CALIBRATION_CACHE")
    if not cache.value:
        raise ConfigurationError(
            "No calibration cache folder: pass cache_dir='/path/to/cache' (or --cache-dir) "
            "or set KOA_CALIBRATION_CACHE."
        )
    s["cache_dir"] = Setting(str(Path(cache.value).expanduser().absolute()), cache.source)
    s["local_database_filename"] = _pick(
        local_database_filename,
        "KOA_LOCAL_CALIBRATION_DATABASE_FILENAME",
        "KOA_LOCAL_DATABASE_FILENAME",
        default=f"{name}_calibrations.db",
    )
    table = _pick(
        None,
        "KOA_LOCAL_CALIBRATION_DATABASE_TABLE_NAME",
        "KOA_LOCAL_DATABASE_TABLE_NAME",
        default=name,
    )
    try:
        validate_column_name(table.value)
    except ValueError:
        raise ConfigurationError(
            f"Invalid table name {table.value!r}: use letters, digits and underscores."
        ) from None
    s["table_name"] = table
    org = _pick(origin, "KOA_CALIBRATION_ORIGIN", "KOA_CALIBRATIONS_ORIGIN", default=DEFAULT_ORIGIN)
    s["origin"] = Setting(str(org.value).strip().upper(), org.source)
    if use_cached is not None:
        s["use_cached"] = Setting(bool(use_cached), "argument")
    elif os.environ.get("KOA_USE_CACHED_CALIBRATIONS", "").strip():
        s["use_cached"] = Setting(
            env_bool("KOA_USE_CACHED_CALIBRATIONS", True),
            "environment (KOA_USE_CACHED_CALIBRATIONS)",
        )
    else:
        s["use_cached"] = Setting(True, "default")
    s["url"] = _pick(url, "KOA_CALIBRATIONS_URL", default=DEFAULT_URL)
    s["token"] = _pick(token, "KOA_API_TOKEN", secret=True)
    s["keck_email"] = _pick(None, "KECK_OBSERVER_EMAIL")
    s["keck_password"] = _pick(None, "KECK_OBSERVER_PASSWORD", secret=True)
    s["progress"] = Setting(
        env_bool("KOA_PROGRESS", True),
        "environment (KOA_PROGRESS)" if os.environ.get("KOA_PROGRESS") else "default",
    )
    return StoreConfig(s)


def profile_setting(instrument_name: str) -> Setting:
    """The instrument profile in force for ``instrument_name``, as a setting to show.

    Its value names the instrument and its default version family; its source
    says where the profile came from (``KOA_INSTRUMENT_PROFILE=/path/x.toml``,
    ``entry point module:OBJECT`` or ``built-in default``).

    Raises
    ------
    ConfigurationError
        If the profile cannot be loaded (a bad TOML file, a broken entry point).

    Examples
    --------
    >>> profile_setting("no_such_instrument")
    Setting(value='no_such_instrument (families: cal_type, datetime_obs)', \
source='built-in default', secret=False)
    """
    profile = load_profile(instrument_name)
    families = ", ".join(profile.default_family)
    extra = "".join(
        f"; {cal_type}: {', '.join(columns)}" for cal_type, columns in profile.families.items()
    )
    return Setting(f"{profile.instrument} (families: {families}{extra})", profile.source)

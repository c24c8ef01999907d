"""Settings of a calibration store: from arguments, else the environment, else defaults.

Every setting remembers where its value came from, so ``koa-cal config`` can
show it; secrets are masked whenever a setting is shown.

Environment variables
---------------------
============================================= ===========================================
``KOA_INSTRUMENT_NAME``                       instrument (required unless passed)
``KOA_CALIBRATION_CACHE``                     cache folder (required unless passed)
``KOA_CALIBRATION_CACHE_READONLY``            none (read-only caches searched first,
                                              separated by ``os.pathsep``)
``KOA_LOCAL_CALIBRATION_DATABASE_FILENAME``   ``<instrument>_calibrations.db``
``KOA_LOCAL_CALIBRATION_DATABASE_TABLE_NAME`` ``<instrument>``
``KOA_CALIBRATION_ORIGIN``                    ``LOCAL`` (``KOA_CALIBRATIONS_ORIGIN`` too)
``KOA_USE_CACHED_CALIBRATIONS``               ``true``
``KOA_CALIBRATIONS_URL``                      the Keck calibrations API
``KOA_API_TOKEN``                             none (bearer token for the archive)
``KECK_OBSERVER_EMAIL``                       none (Keck observer login)
``KECK_OBSERVER_PASSWORD``                    none (Keck observer login)
``KECK_LOGIN_URL``                            the Keck login service (for that login)
``KOA_PROGRESS``                              ``1`` (progress bars on a terminal)
``KOA_ALLOW_RETRACTED``                       ``0`` (get a retracted calibration by id,
                                              with a warning)
``KOA_CACHE_MAX_SIZE``                        none (e.g. ``50GiB``: after downloads, the
                                              least recently used files go)
``KOA_INSTRUMENT_PROFILE``                    none (a TOML instrument profile; see
                                              :mod:`koa_middleware.profiles`)
``KOA_MAX_ANSWER_BYTES``                      ``256MiB`` (the most bytes, decompressed,
                                              read of one archive answer; e.g. ``1GiB``)
``KOA_LOCK_TIMEOUT``                          none: wait as long as it takes (seconds to
                                              wait for a calibration's lock held by
                                              another process, e.g. ``600``)
============================================= ===========================================

Defaults
--------
A parameter whose default is :data:`DEFAULT` (``url=DEFAULT``) reads the
environment variable above, else falls back to the built-in default. Where the
reference implementation used None for that, None still means the same.

The archive credential is chosen here, once (:func:`resolve_credential`,
:attr:`StoreConfig.credential`): a token argument, else ``KOA_API_TOKEN``, else
the Keck observer login, else none. The client is handed that choice and never
reads the environment for it again, so its errors say where the credential came
from.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from .errors import ConfigurationError
from .profiles import load_profile
from .records import parse_bool, validate_column_name

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT",
    "DEFAULT_URL",
    "ArchiveCredential",
    "Default",
    "Setting",
    "StoreConfig",
    "env_bool",
    "profile_setting",
    "progress_from_env",
    "resolve_config",
    "resolve_credential",
]


class Default(enum.Enum):
    """The type of :data:`DEFAULT`: "not given, use the configured default".

    An enum of one member, so the sentinel is a singleton that survives
    pickling and copying, and ``x is DEFAULT`` is always the test.
    """

    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"

    __str__ = __repr__


#: "Not given": read the environment, else use the built-in default. Distinct from
#: None, which some parameters accept too (see each one's documentation).
DEFAULT: Final = Default.DEFAULT

#: The Keck calibrations service: the archive when neither ``url`` nor
#: ``KOA_CALIBRATIONS_URL`` names another. The only definition; import it from here.
DEFAULT_URL: Final = "https://www3.keck.hawaii.edu/api/calibrations"
DEFAULT_ORIGIN = "LOCAL"
#: The most bytes (decompressed) read of one archive answer, unless configured otherwise.
DEFAULT_MAX_ANSWER_BYTES: Final = 256 << 20

#: Where a token passed as an argument came from, as messages name it.
TOKEN_ARGUMENT = "the token argument"
#: Where the Keck observer login came from, as messages name it.
KECK_LOGIN_SOURCE = "KECK_OBSERVER_EMAIL / KECK_OBSERVER_PASSWORD"


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

    Examples
    --------
    >>> env_bool("KOA_NO_SUCH_FLAG", default=True)
    True
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    flag = parse_bool(raw)
    if flag is None:
        raise ConfigurationError(f"{name}={raw!r} is not a boolean; set it to true or false.")
    return flag


def progress_from_env() -> Setting:
    """Whether progress bars may show, from ``KOA_PROGRESS`` (default true).

    The one place that reads ``KOA_PROGRESS``; a bar also needs a terminal
    (:func:`koa_middleware.client.downloads.progress_enabled`).

    Raises
    ------
    ConfigurationError
        If ``KOA_PROGRESS`` is not a yes/no word.
    """
    named = bool(os.environ.get("KOA_PROGRESS", "").strip())
    return Setting(
        env_bool("KOA_PROGRESS", True), "environment (KOA_PROGRESS)" if named else "default"
    )


def given(argument: Any) -> bool:
    """Whether ``argument`` was given: neither :data:`DEFAULT` nor None.

    Examples
    --------
    >>> given(DEFAULT), given(None), given("")
    (False, False, True)
    """
    return argument is not None and argument is not DEFAULT


def _pick(
    argument: Any,
    *env_names: str,
    default: Any = None,
    secret: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Setting:
    """The argument if given, else the first environment variable set, else ``default``."""
    if given(argument):
        return Setting(argument, "argument", secret)
    env = os.environ if environ is None else environ
    for name in env_names:
        value = env.get(name)
        if value:
            return Setting(value, f"environment ({name})", secret)
    return Setting(default, "default", secret)


@dataclass(frozen=True)
class ArchiveCredential:
    """The credential chosen for the archive, and where it came from.

    Made by :func:`resolve_credential` or :attr:`StoreConfig.credential`;
    :func:`koa_middleware.client.auth.credentials_for` turns it into what the
    client sends. The secrets are left out of the repr.

    Attributes
    ----------
    kind : {'token', 'keck_login', 'anonymous'}
        A bearer token, the Keck observer login, or no credential.
    source : str
        Where it came from, as messages name it: ``'the token argument'``,
        ``'KOA_API_TOKEN'``, ``'KECK_OBSERVER_EMAIL / KECK_OBSERVER_PASSWORD'``,
        or ``''`` for none.
    token : str | None
        The bearer token (kind ``'token'``).
    email, password : str | None
        The Keck observer account (kind ``'keck_login'``; one may be missing,
        which the client refuses with a message saying so).
    login_url : str | None
        The Keck login service (``KECK_LOGIN_URL``); None: the client's default.

    Examples
    --------
    >>> resolve_credential(environ={"KOA_API_TOKEN": "s3cret"})
    ArchiveCredential(kind='token', source='KOA_API_TOKEN', login_url=None)
    """

    kind: Literal["token", "keck_login", "anonymous"]
    source: str
    token: str | None = field(default=None, repr=False)
    email: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    login_url: str | None = None


def _credential(
    token: Setting, email: Setting, password: Setting, login_url: Setting
) -> ArchiveCredential:
    """The precedence rule: a token (argument, then environment), then the Keck login."""
    if token.value:
        source = TOKEN_ARGUMENT if token.source == "argument" else _variable(token.source)
        return ArchiveCredential("token", source, token=token.value)
    if email.value or password.value:
        return ArchiveCredential(
            "keck_login",
            KECK_LOGIN_SOURCE,
            email=email.value,
            password=password.value,
            login_url=login_url.value,
        )
    return ArchiveCredential("anonymous", "")


def _variable(source: str) -> str:
    """``'KOA_API_TOKEN'`` from a setting's source ``'environment (KOA_API_TOKEN)'``."""
    return source.removeprefix("environment (").removesuffix(")")


def _credential_settings(
    token: Any, login_url: Any = DEFAULT, environ: Mapping[str, str] | None = None
) -> dict[str, Setting]:
    """The credential settings, each read once from the arguments or the environment."""
    # An empty token argument is not a token: the environment is read, as it always was.
    return {
        "token": _pick(token or None, "KOA_API_TOKEN", secret=True, environ=environ),
        "keck_email": _pick(None, "KECK_OBSERVER_EMAIL", secret=True, environ=environ),
        "keck_password": _pick(None, "KECK_OBSERVER_PASSWORD", secret=True, environ=environ),
        "keck_login_url": _pick(login_url or None, "KECK_LOGIN_URL", environ=environ),
    }


def resolve_credential(
    token: str | None | Default = DEFAULT,
    *,
    login_url: str | None | Default = DEFAULT,
    environ: Mapping[str, str] | None = None,
) -> ArchiveCredential:
    """Choose the archive credential: ``token``, else ``KOA_API_TOKEN``, else the Keck login.

    Parameters
    ----------
    token : str | None | Default
        A bearer token. :data:`DEFAULT`, None or ``''`` read ``KOA_API_TOKEN``,
        else the Keck observer login (``KECK_OBSERVER_EMAIL`` /
        ``KECK_OBSERVER_PASSWORD``), else no credential.
    login_url : str | None | Default
        The Keck login service; :data:`DEFAULT` or None read ``KECK_LOGIN_URL``.
    environ : Mapping | None
        The environment to read; None reads ``os.environ``.

    Returns
    -------
    ArchiveCredential
        The choice, with where it came from.

    Examples
    --------
    >>> resolve_credential("abc", environ={"KOA_API_TOKEN": "xyz"}).source
    'the token argument'
    >>> resolve_credential(environ={}).kind
    'anonymous'
    """
    s = _credential_settings(token, login_url, environ)
    return _credential(s["token"], s["keck_email"], s["keck_password"], s["keck_login_url"])


@dataclass(frozen=True, repr=False)
class StoreConfig:
    """The resolved settings of a :class:`~koa_middleware.store.CalibrationStore`.

    Each attribute is the value in force; :meth:`source` says where it came
    from; :attr:`credential` is the archive credential they choose. Secrets
    (the token, the Keck login's email and password) never appear in the repr.
    """

    instrument_name: str
    cache_dir: str
    local_database_filename: str
    table_name: str
    origin: str
    use_cached: bool
    url: str
    token: str | None
    keck_email: str | None
    keck_password: str | None
    #: The Keck login service (``KECK_LOGIN_URL``); None: the client's default.
    keck_login_url: str | None
    progress: bool
    #: Serve a retracted calibration asked for by id (with a warning) instead of refusing it.
    allow_retracted: bool = False
    #: Bytes the cache's files may take; least recently used files go after downloads.
    cache_max_size: int | None = None
    #: Read-only caches searched before ``cache_dir`` (absolute folders, in order).
    readonly_caches: tuple[str, ...] = ()
    #: The most bytes (decompressed) the archive client reads of one answer; None: its default.
    max_answer_bytes: int | None = None
    #: Seconds to wait for a calibration's lock held by another process; None: no limit.
    lock_timeout: float | None = None
    #: name -> the resolved :class:`Setting`, in display order.
    settings: dict[str, Setting] = field(default_factory=dict, compare=False)

    @classmethod
    def from_settings(cls, settings: dict[str, Setting]) -> StoreConfig:
        """Build the object from resolved settings (one per field)."""
        return cls(**{name: s.value for name, s in settings.items()}, settings=settings)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v.shown()!r}" for k, v in self.settings.items())
        return f"StoreConfig({shown})"

    def source(self, name: str) -> str:
        """Where setting ``name`` came from: argument, ``environment (NAME)`` or default."""
        return self.settings[name].source

    def rows(self) -> list[tuple[str, str, str]]:
        """``(name, shown value, source)`` for every setting; secrets masked."""
        return [(name, s.shown(), s.source) for name, s in self.settings.items()]

    @property
    def has_login(self) -> bool:
        """Whether both halves of the Keck observer login are set."""
        return bool(self.keck_email and self.keck_password)

    @property
    def archive_configured(self) -> bool:
        """Whether to connect to an archive at all.

        The public Keck archive needs credentials, so with its default URL and
        none of them the store works from the cache alone; any other URL (a
        site's own archive, a test server) is used as given.
        """
        return bool(self.token or self.has_login) or self.url.rstrip("/") != DEFAULT_URL

    @property
    def credential(self) -> ArchiveCredential:
        """The archive credential these settings choose, and where it came from.

        Derived from the settings resolved once by :func:`resolve_config`: a
        change of the environment afterwards does not change it.
        """
        token = self.settings.get("token") or Setting(self.token, "argument", secret=True)
        return _credential(
            token,
            Setting(self.keck_email, "", secret=True),
            Setting(self.keck_password, "", secret=True),
            Setting(self.keck_login_url, ""),
        )


def resolve_config(
    instrument_name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_database_filename: str | None = None,
    use_cached: bool | None = None,
    origin: str | None = None,
    url: str | None = None,
    token: str | None = None,
    readonly_caches: str | os.PathLike | list | tuple | None = None,
    allow_retracted: bool | None = None,
) -> StoreConfig:
    """Resolve every store setting from arguments, the environment and defaults.

    An argument left at None (or given as :data:`DEFAULT`) is read from its
    environment variable, else takes its default (see the module's table).
    ``readonly_caches`` (else ``KOA_CALIBRATION_CACHE_READONLY``) names the
    read-only caches, as a sequence of folders or one string of folders
    separated by ``os.pathsep``; see :mod:`koa_middleware.cache.readonly`.

    Raises
    ------
    ConfigurationError
        If the instrument or the cache folder is set nowhere, or a value is invalid.

    Examples
    --------
    >>> cfg = resolve_config("HISPEC", "/tmp/koa_cache", use_cached=True)
    >>> cfg.instrument_name, cfg.local_database_filename, cfg.table_name
    ('hispec', 'hispec_calibrations.db', 'hispec')
    >>> cfg.source("use_cached")
    'argument'
    """
    s: dict[str, Setting] = {}
    name = _instrument(instrument_name, s)
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
    s["use_cached"] = _flag(use_cached, "KOA_USE_CACHED_CALIBRATIONS", True)
    s["url"] = _pick(url, "KOA_CALIBRATIONS_URL", default=DEFAULT_URL)
    s.update(_credential_settings(token))
    s["progress"] = progress_from_env()
    s["allow_retracted"] = _flag(allow_retracted, "KOA_ALLOW_RETRACTED", False)
    s["cache_max_size"] = _size("KOA_CACHE_MAX_SIZE")
    s["readonly_caches"] = _readonly_caches(readonly_caches, s["cache_dir"].value)
    s["max_answer_bytes"] = _answer_limit()
    s["lock_timeout"] = lock_timeout_setting()
    return StoreConfig.from_settings(s)


def _readonly_caches(argument: Any, cache_dir: str) -> Setting:
    """The read-only cache folders: absolute, without repeats or the writable cache itself."""
    picked = _pick(argument, "KOA_CALIBRATION_CACHE_READONLY", default="")
    raw = picked.value
    parts = raw.split(os.pathsep) if isinstance(raw, str) else [os.fspath(p) for p in raw]
    folders: list[str] = []
    for part in parts:
        if not part.strip():
            continue
        folder = str(Path(part.strip()).expanduser().absolute())
        if folder == cache_dir:
            logger.warning(
                "Ignoring %s in KOA_CALIBRATION_CACHE_READONLY: it is the writable cache itself.",
                folder,
            )
        elif folder not in folders:
            folders.append(folder)
    return Setting(_Folders(folders), picked.source)


class _Folders(tuple):
    """Folders, shown as the environment variable spells them (joined by ``os.pathsep``)."""

    def __str__(self) -> str:
        return os.pathsep.join(self)


def _size(env_name: str) -> Setting:
    """A size setting in bytes from ``env_name`` (``50GiB``, ``500MB``), or None when unset.

    Raises
    ------
    ConfigurationError
        Naming the variable, if it holds no size.
    """
    picked = _pick(None, env_name)
    if picked.value is None or not picked.value.strip():
        return Setting(None, "default")
    from .cache.prune import parse_size

    try:
        return Setting(parse_size(picked.value), picked.source)
    except (ConfigurationError, OverflowError):
        shown = picked.value if len(picked.value) <= 40 else picked.value[:40] + "..."
        raise ConfigurationError(
            f"{env_name}={shown!r} is not a size: give bytes, or a number with a unit "
            "such as 500MB or 50GiB."
        ) from None


def lock_timeout_setting(environ: Mapping[str, str] | None = None) -> Setting:
    """Seconds to wait for a calibration's lock, from ``KOA_LOCK_TIMEOUT``; None: no limit.

    Raises
    ------
    ConfigurationError
        Naming the variable, if it holds no number of seconds (0 or more).

    Examples
    --------
    >>> lock_timeout_setting({"KOA_LOCK_TIMEOUT": "90"})
    Setting(value=90.0, source='environment (KOA_LOCK_TIMEOUT)', secret=False)
    >>> lock_timeout_setting({}).value is None
    True
    """
    picked = _pick(None, "KOA_LOCK_TIMEOUT", environ=environ)
    text = (picked.value or "").strip()
    if not text or text.lower() in ("none", "never", "forever"):
        return Setting(None, "default" if not text else picked.source)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ConfigurationError(
            f"KOA_LOCK_TIMEOUT={shown!r} is not a number of seconds: give how long to wait "
            "for a calibration that another process is writing (e.g. 600), or unset it to "
            "wait as long as it takes."
        )
    return Setting(seconds, picked.source)


def _answer_limit() -> Setting:
    """The client's answer-size limit: ``KOA_MAX_ANSWER_BYTES``, else the client's default.

    Raises
    ------
    ConfigurationError
        Naming the variable, if it holds no size or zero.
    """
    picked = _size("KOA_MAX_ANSWER_BYTES")
    if picked.value is None:
        return Setting(DEFAULT_MAX_ANSWER_BYTES, "default")
    if picked.value < 1:
        raise ConfigurationError(
            f"KOA_MAX_ANSWER_BYTES={os.environ['KOA_MAX_ANSWER_BYTES']!r} allows no answer at "
            "all: give at least a few MB (the default is 256MiB), e.g. 512MB or 1GiB."
        )
    return Setting(picked.value, picked.source)


def _flag(argument: bool | None | Default, env_name: str, default: bool) -> Setting:
    """A yes/no setting: the argument, else the environment variable, else the default."""
    if given(argument):
        return Setting(bool(argument), "argument")
    if os.environ.get(env_name, "").strip():
        return Setting(env_bool(env_name, default), f"environment ({env_name})")
    return Setting(default, "default")


def _instrument(argument: str | None, settings: dict[str, Setting]) -> str:
    """Resolve and check the instrument name into ``settings``; return it."""
    inst = _pick(argument, "KOA_INSTRUMENT_NAME")
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
    settings["instrument_name"] = Setting(name, inst.source)
    return name


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

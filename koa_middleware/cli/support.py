"""Helpers of ``koa-cal``: option parsing, opening the store, loading selectors."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

import click

from ..errors import InvalidRecordError, RemoteUnavailableError
from ..records import validate_column_name

logger = logging.getLogger(__name__)

__all__ = [
    "SELECTOR_ALIASES",
    "State",
    "cache_is_new",
    "load_selector",
    "open_store",
    "parse_pairs",
    "probe_archive",
]

#: Short names ``koa-cal explain --selector`` accepts for the built-in selectors.
SELECTOR_ALIASES = {
    "nearest": "koa_middleware.selectors:NearestInTimeSelector",
    "latest": "koa_middleware.selectors:LatestVersionSelector",
}


@dataclass
class State:
    """The global options, shared with every command."""

    instrument: str | None = None
    cache_dir: str | None = None
    url: str | None = None
    json: bool = False
    retries: int = 2


def parse_pairs(values: tuple[str, ...], option: str, validate_keys: bool = True) -> dict[str, str]:
    """Parse ``KEY=VALUE`` options, refusing malformed ones and unsafe column names.

    Parameters
    ----------
    values : tuple of str
        The option values as given.
    option : str
        The option's name, for messages.
    validate_keys : bool
        Require every key to be a valid column name.

    Returns
    -------
    dict
        Keys to values (strings).

    Raises
    ------
    click.BadParameter
        If an item is not ``KEY=VALUE`` or a key is not a valid column name.

    Examples
    --------
    >>> parse_pairs(("spectrograph=yJ",), "--where")
    {'spectrograph': 'yJ'}
    """
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE.", param_hint=option)
        key = key.strip()
        if validate_keys:
            try:
                validate_column_name(key)
            except InvalidRecordError as exc:
                raise click.BadParameter(str(exc), param_hint=option) from None
        result[key] = value
    return result


def open_store(state: State, remote: bool = False, probe: bool = False) -> Any:
    """Open the store the global options describe.

    Parameters
    ----------
    state : State
        The global options.
    remote : bool
        Connect to the archive (when one is configured).
    probe : bool
        First make sure the archive answers and accepts the credentials, so a
        command that needs it fails before anything is written.

    Returns
    -------
    CalibrationStore
        The open store (close it, or use it as a context manager).

    Raises
    ------
    ConfigurationError
        If the instrument or cache folder is set nowhere.
    RemoteUnavailableError, AuthenticationError
        With ``probe``, if the archive is unreachable or refuses the credentials.
    """
    from ..store import CalibrationStore

    if probe:
        probe_archive(state)
    store = CalibrationStore(
        state.instrument, state.cache_dir, connect_remote=remote, sync_on_init=False, url=state.url
    )
    if store.remote_db is not None:
        store.remote_db.retries = state.retries
    return store


def cache_is_new(state: State) -> bool:
    """Return True when the instrument's cache database does not exist yet.

    A command that could work from the cache alone but finds none (``get``,
    ``verify --repair``) checks the archive first, so that it fails before
    creating an empty cache.
    """
    from ..cache.layout import CacheLayout
    from ..config import resolve_config

    cfg = resolve_config(state.instrument, state.cache_dir, url=state.url)
    layout = CacheLayout(cfg.cache_dir, cfg.instrument_name)
    return not (layout.database_dir / cfg.local_database_filename).exists()


def probe_archive(state: State) -> None:
    """Ask the archive for its newest update: it is reachable and accepts the credentials.

    Raises
    ------
    RemoteUnavailableError
        If no archive is configured or it cannot be reached.
    AuthenticationError
        If it refuses the credentials.
    """
    from ..client.remote_database import RemoteCalibrationDB
    from ..config import resolve_config

    cfg = resolve_config(state.instrument, state.cache_dir, url=state.url)
    if not cfg.archive_configured:
        raise RemoteUnavailableError(
            f"No archive credentials for {cfg.url}: set KOA_API_TOKEN (or "
            "KECK_OBSERVER_EMAIL/KECK_OBSERVER_PASSWORD), or point --url / "
            "KOA_CALIBRATIONS_URL at another archive."
        )
    with RemoteCalibrationDB(
        cfg.instrument_name, url=cfg.url, token=cfg.token, retries=state.retries
    ) as remote:
        remote.get_last_updated()  # reachable, and the credentials are accepted


def load_selector(spec: str, options: dict[str, str]) -> Any:
    """Import and build a selector from ``MODULE:CLASS`` (or an alias) and keyword options.

    Parameters
    ----------
    spec : str
        ``MODULE:CLASS``, or a key of :data:`SELECTOR_ALIASES`.
    options : dict
        Keyword arguments of the selector's constructor.

    Returns
    -------
    CalibrationSelector
        The selector.

    Raises
    ------
    click.BadParameter
        If the class cannot be imported, is not a selector, or refuses the options.
    """
    from ..selector_base import CalibrationSelector

    target = SELECTOR_ALIASES.get(spec, spec)
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise click.BadParameter(f"{spec!r}: use MODULE:CLASS, 'nearest' or 'latest'.",
                                 param_hint="--selector")  # fmt: skip
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {target}: {exc}", param_hint="--selector") from None
    if not (isinstance(cls, type) and issubclass(cls, CalibrationSelector)):
        raise click.BadParameter(f"{target} is not a CalibrationSelector.", param_hint="--selector")
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(
            f"cannot build {class_name}: {exc}", param_hint="--option"
        ) from None

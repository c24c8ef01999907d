"""Helpers of ``koa-cal``: options, opening the store or the archive, selectors, Ctrl-C.

The commands live in :mod:`.commands` (the group and its entry point),
:mod:`.cache_commands`, :mod:`.archive_commands` and :mod:`.register_command`;
what they share is here.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import click

from ..errors import ConfigurationError, InvalidRecordError, RemoteUnavailableError
from ..records import validate_column_name
from . import output as out

logger = logging.getLogger(__name__)

__all__ = [
    "SELECTOR_ALIASES",
    "Interrupted",
    "State",
    "archive_display_url",
    "cache_is_new",
    "command_line_wording",
    "emit",
    "json_flag",
    "load_selector",
    "load_selector_class",
    "one_bar_for_many",
    "one_line",
    "open_archive",
    "open_store",
    "parse_pairs",
    "probe_archive",
    "refuse_unknown_instrument",
    "require_cache",
    "selector_options",
    "summarize_interrupt",
    "time_bound",
]

#: Short names ``koa-cal explain --selector`` accepts for the built-in selectors.
SELECTOR_ALIASES = {
    "nearest": "koa_middleware.selectors:NearestInTimeSelector",
    "latest": "koa_middleware.selectors:LatestVersionSelector",
}

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")


@dataclass
class State:
    """The global options, shared with every command."""

    instrument: str | None = None
    cache_dir: str | None = None
    url: str | None = None
    json: bool = False
    retries: int = 2
    new_instrument: bool = False


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a command, with a one-line summary of what was done.

    Parameters
    ----------
    summary : str
        What was done before the interruption and how to go on, e.g.
        ``"306 of 2,014 files downloaded; run the same command to resume"``.

    Examples
    --------
    >>> Interrupted("3 of 5 files registered").summary
    '3 of 5 files registered'
    """

    def __init__(self, summary: str):
        super().__init__(summary)
        self.summary = summary


@contextlib.contextmanager
def summarize_interrupt(summary: Callable[[], str]) -> Iterator[None]:
    """Turn Ctrl-C inside the block into :class:`Interrupted` carrying ``summary()``.

    Parameters
    ----------
    summary : callable
        Called when Ctrl-C arrives; returns the one-line summary.

    Raises
    ------
    Interrupted
        On Ctrl-C (an :class:`Interrupted` raised inside passes unchanged).

    Examples
    --------
    >>> done = []
    >>> with summarize_interrupt(lambda: f"{len(done)} done"):  # doctest: +SKIP
    ...     work(done)
    """
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(summary()) from None


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).json = True


#: ``--json`` on a command, the same as the global option.
json_flag = click.option(
    "--json",
    is_flag=True,
    expose_value=False,
    callback=_set_json,
    help="Print JSON instead of text (also a global option: koa-cal --json COMMAND).",
)


def emit(state: State, data: Any, text: str) -> None:
    """Print ``text``, or ``data`` as JSON with ``--json``.

    Parameters
    ----------
    state : State
        The global options.
    data : Any
        What ``--json`` prints.
    text : str
        What is printed otherwise.

    Examples
    --------
    >>> emit(State(json=False), {"records": 3}, "3 records")
    3 records
    """
    click.echo(out.render_json(data) if state.json else out.escape_controls(text, keep="\n\t"))


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none).

    Examples
    --------
    >>> one_line(ValueError("two\\n  lines"))
    'two lines'
    """
    return " ".join(str(exc).split()) or type(exc).__name__


#: Advice the library gives Python callers, and what says the same on the command line.
_PYTHON_ADVICE = (
    (
        re.compile(r"pass max_size='50GiB' \(koa-cal prune --max-size\)"),
        "give --max-size (e.g. koa-cal prune --max-size 50GiB)",
    ),
    (
        re.compile(r",? and construct the store with connect_remote=True\."),
        " (or give the archive with koa-cal --url URL).",
    ),
    (re.compile(r"pass cache_dir='/path/to/cache' \(or --cache-dir\)"), "give --cache-dir DIR"),
    (
        re.compile(r"pass instrument_name='hispec' \(or --instrument\)"),
        "give --instrument NAME (e.g. hispec)",
    ),
    (re.compile(r"pass force=True \(koa-cal remove --force\)"), "give --force"),
    (re.compile(r" \(allow_retracted=True\)"), ""),
    (re.compile(r"; allow_retracted=True in Python"), ""),
    (re.compile(r"or leave it out of match=\."), "or leave it out of --option match=COLUMN,..."),
    (re.compile(r"or pass (\w+)='([^']*)'"), r"or give --set \1=\2"),
    (re.compile(r"or pass (\w+)=\.\.\."), r"or give --set \1=VALUE"),
    (re.compile(r"or pass the field as an override\."), "or give --set FIELD=VALUE."),
)


def command_line_wording(message: str) -> str:
    """A library error's message with its Python advice said as ``koa-cal`` options.

    The library's messages tell Python callers what to pass (``max_size='50GiB'``,
    ``connect_remote=True``); on the command line the same advice names the
    command's options and variables.

    Parameters
    ----------
    message : str
        The message, as the library wrote it.

    Returns
    -------
    str
        The message for a user of ``koa-cal``.

    Examples
    --------
    >>> command_line_wording("Set KOA_CALIBRATIONS_URL, and construct the store with "
    ...                      "connect_remote=True.")
    'Set KOA_CALIBRATIONS_URL (or give the archive with koa-cal --url URL).'
    """
    for pattern, replacement in _PYTHON_ADVICE:
        message = pattern.sub(replacement, message)
    return message


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


def time_bound(value: str | None, option: str, end: bool) -> str | None:
    """A ``--since`` / ``--until`` value as the store reads it; a bare date covers its day.

    Parameters
    ----------
    value : str | None
        The option's value: a UTC time, or a date ``YYYY-MM-DD``.
    option : str
        The option's name, for messages.
    end : bool
        True for ``--until``: a date means the end of that day (23:59:59.999);
        else its start (00:00).

    Returns
    -------
    str | None
        The bound (None when ``value`` is None).

    Raises
    ------
    click.BadParameter
        If a date-only value is not a real date.

    Examples
    --------
    >>> time_bound("2025-03-03", "--until", end=True)
    '2025-03-03T23:59:59.999'
    >>> time_bound("2025-03-03", "--since", end=False)
    '2025-03-03T00:00:00.000'
    """
    if value is None or not _DATE_ONLY.match(value.strip()):
        return value
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS.", param_hint=option
        ) from None
    return f"{day.isoformat()}T{'23:59:59.999' if end else '00:00:00.000'}"


def open_store(state: State, remote: bool = False, probe: bool = False, create: bool = True) -> Any:
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
    create : bool
        Create the cache's folders and database when missing. Read commands
        pass False: they create nothing, and read the read-only caches alone
        when the instrument has no cache of its own yet.

    Returns
    -------
    CalibrationStore
        The open store (close it, or use it as a context manager).

    Raises
    ------
    ConfigurationError
        If the instrument or cache folder is set nowhere, or (with ``create``)
        the instrument has neither a profile nor a cache and ``--new-instrument``
        was not given (see :func:`refuse_unknown_instrument`).
    RemoteUnavailableError, AuthenticationError
        With ``probe``, if the archive is unreachable or refuses the credentials.
    """
    from ..store import CalibrationStore

    if create:
        refuse_unknown_instrument(state)
    if probe:
        probe_archive(state)
    store = CalibrationStore(
        state.instrument,
        state.cache_dir,
        connect_remote=False,
        sync_on_init=False,
        url=state.url,
        create=create,
    )
    if remote and store.config.archive_configured:
        store.remote_db = open_archive(state)  # its errors name where the credential came from
    return store


def archive_display_url(store: Any) -> str | None:
    """The archive a store works with, as shown (no user name or password), or None.

    A store opened without connecting (the commands that only read the
    cache) still names the archive its settings configure, as a connected
    store would: the URL a run manifest records must not depend on whether
    the command asked the archive anything.

    Parameters
    ----------
    store : CalibrationStore
        The open store.

    Returns
    -------
    str | None
        The connected client's ``display_url``; else, when an archive is
        configured (``KOA_CALIBRATIONS_URL`` or ``--url``, or credentials for
        the default one), its URL in the same form; else None.

    Examples
    --------
    >>> archive_display_url(store)  # doctest: +SKIP
    'http://127.0.0.1:8750/api/calibrations'
    """
    from ..client.http import redact_url

    remote = getattr(store, "remote_db", None)
    if remote is not None:
        return remote.display_url
    if not store.config.archive_configured:
        return None
    # As RemoteCalibrationDB forms its display_url.
    return redact_url(str(store.config.url).rstrip("/"))


def open_archive(state: State) -> Any:
    """Open the archive client alone, for a command that needs no cache.

    Returns
    -------
    RemoteCalibrationDB
        The client (use it as a context manager).

    Raises
    ------
    RemoteUnavailableError
        If no archive is configured.

    Examples
    --------
    >>> with open_archive(state) as remote:  # doctest: +SKIP
    ...     remote.get_last_updated()
    '2026-02-12T03:04:05.000'
    """
    from ..client.connect import connect_archive
    from ..config import resolve_config

    cfg = resolve_config(state.instrument, state.cache_dir, url=state.url)
    if not cfg.archive_configured:
        raise RemoteUnavailableError(
            f"No archive credentials for {cfg.url}: set KOA_API_TOKEN (or "
            "KECK_OBSERVER_EMAIL/KECK_OBSERVER_PASSWORD), or point --url / "
            "KOA_CALIBRATIONS_URL at another archive."
        )
    # The credential resolved once, with its source (named by the client's errors).
    return connect_archive(cfg, retries=state.retries)


def cache_is_new(state: State) -> bool:
    """Return True when the instrument's cache database does not exist yet.

    A read-only cache (``KOA_CALIBRATION_CACHE_READONLY``) holding the
    instrument's database counts as a cache. A command that could work from
    the cache alone but finds none (``get``, ``verify --repair``) checks the
    archive first, so that it fails before creating an empty cache.

    Parameters
    ----------
    state : State
        The global options.

    Returns
    -------
    bool
        Whether no database of the instrument exists in the cache folders.

    Raises
    ------
    ConfigurationError
        If the instrument or cache folder is set nowhere.

    Examples
    --------
    >>> cache_is_new(State(instrument="hispec", cache_dir="/nonexistent"))
    True
    """
    from ..cache.layout import CacheLayout
    from ..config import resolve_config

    cfg = resolve_config(state.instrument, state.cache_dir, url=state.url)
    if cfg.local_database_filename == ":memory:":
        return False
    folders = (cfg.cache_dir, *getattr(cfg, "readonly_caches", ()))
    return not any(
        (
            CacheLayout(folder, cfg.instrument_name).database_dir / cfg.local_database_filename
        ).exists()
        for folder in folders
    )


def refuse_unknown_instrument(state: State) -> None:
    """Refuse to create a cache for an instrument that has no profile, unless asked to.

    A typo (``--instrument hispek``) would otherwise create a new cache with
    the generic profile, silently. An instrument with a profile, or with a
    cache already (its own or a read-only one), passes; so does any with
    ``koa-cal --new-instrument``.

    Raises
    ------
    ConfigurationError
        Listing the instruments that have a profile.

    Examples
    --------
    >>> refuse_unknown_instrument(State(instrument="hispec", cache_dir="/tmp/c"))
    """
    from ..config import resolve_config
    from ..profiles import DEFAULT_SOURCE, known_instruments, load_profile

    if state.new_instrument:
        return
    cfg = resolve_config(state.instrument, state.cache_dir, url=state.url)
    if load_profile(cfg.instrument_name).source != DEFAULT_SOURCE or not cache_is_new(state):
        return
    known = ", ".join(known_instruments()) or "none"
    raise ConfigurationError(
        f"No instrument profile and no cache for {cfg.instrument_name!r} in {cfg.cache_dir}; "
        f"the instruments with a profile are: {known}. Check the spelling of --instrument "
        "(or KOA_INSTRUMENT_NAME); to start a cache for a new instrument with the generic "
        "profile, run koa-cal --new-instrument ... (or give it a profile: "
        "KOA_INSTRUMENT_PROFILE)."
    )


def require_cache(state: State) -> None:
    """Refuse a command that reads the cache when the instrument has none yet.

    Nothing is created: only the commands that write (``register``, ``sync``,
    ``push``, ``get``, ``verify --repair``) create a cache.

    Raises
    ------
    click.ClickException
        If the instrument's cache database does not exist (exit status 1).
    ConfigurationError
        If the instrument or cache folder is set nowhere.

    Examples
    --------
    >>> require_cache(State(instrument="hispec", cache_dir="/nonexistent"))  # doctest: +SKIP
    Traceback (most recent call last):
    click.exceptions.ClickException: No calibration cache for hispec in /nonexistent yet: ...
    """
    from ..config import resolve_config

    if not cache_is_new(state):
        return
    cfg = resolve_config(state.instrument, state.cache_dir, url=state.url)
    raise click.ClickException(
        f"No calibration cache for {cfg.instrument_name} in {cfg.cache_dir} yet: "
        "`koa-cal sync` (from the archive) or `koa-cal register FILE...` creates one."
    )


def probe_archive(state: State) -> None:
    """Ask the archive for its newest update: it is reachable and accepts the credentials.

    Raises
    ------
    RemoteUnavailableError
        If no archive is configured or it cannot be reached.
    AuthenticationError
        If it refuses the credentials.
    """
    with open_archive(state) as remote:
        remote.get_last_updated()  # reachable, and the credentials are accepted


@contextlib.contextmanager
def one_bar_for_many(store: Any) -> Iterator[bool | None]:
    """Within the block, the store's single-file downloads show no bar of their own.

    A command that downloads many files shows one bar over all of them
    instead; it yields the store's progress setting for that bar.

    Parameters
    ----------
    store : CalibrationStore
        The open store.

    Yields
    ------
    bool | None
        The progress setting in force before the block.

    Examples
    --------
    >>> with one_bar_for_many(store) as progress:  # doctest: +SKIP
    ...     with progress_bar(total_bytes, "files", progress) as bar:
    ...         for record in records:
    ...             store.download_calibration_file(record)
    ...             bar.update(record["file_size"])
    """
    saved = store.archive.progress
    store.archive.progress = False
    try:
        yield saved
    finally:
        store.archive.progress = saved


def load_selector(spec: str, options: dict[str, str]) -> Any:
    """Import and build a selector from ``MODULE:CLASS`` (or an alias) and keyword options.

    A module in the current folder is found, as ``python -m`` would find it.

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

    Examples
    --------
    >>> load_selector("nearest", {"cal_type": "dark"}).cal_type
    'dark'
    """
    cls = load_selector_class(spec)
    _refuse_unknown_options(cls, options)
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(
            f"cannot build {cls.__name__}: {exc}", param_hint="--option"
        ) from None


def load_selector_class(spec: str) -> type:
    """Import a selector class from ``MODULE:CLASS`` (or an alias of :data:`SELECTOR_ALIASES`).

    A module in the current folder is found, as ``python -m`` would find it.

    Raises
    ------
    click.BadParameter
        If the class cannot be imported or is not a selector.

    Examples
    --------
    >>> load_selector_class("latest").__name__
    'LatestVersionSelector'
    """
    from ..selector_base import CalibrationSelector

    target = SELECTOR_ALIASES.get(spec, spec)
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise click.BadParameter(f"{spec!r}: use MODULE:CLASS, 'nearest' or 'latest'.",
                                 param_hint="--selector")  # fmt: skip
    try:
        with _current_folder_importable():
            cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {target}: {exc}", param_hint="--selector") from None
    if not (isinstance(cls, type) and issubclass(cls, CalibrationSelector)):
        raise click.BadParameter(f"{target} is not a CalibrationSelector.", param_hint="--selector")
    return cls


def selector_options(cls: type) -> list[str] | None:
    """The options a selector class takes, or None when it takes any keyword.

    See :func:`koa_middleware.selector_options.accepted_options`.

    Examples
    --------
    >>> from koa_middleware.selectors import NearestInTimeSelector
    >>> selector_options(NearestInTimeSelector)
    ['cal_type', 'explain_limit', 'master_only', 'match', 'max_days', 'origin']
    """
    from ..selector_options import accepted_options

    return accepted_options(cls)


def _refuse_unknown_options(cls: type, options: dict[str, str]) -> None:
    """Refuse ``--option`` names the selector does not take (a typo is never ignored)."""
    known = selector_options(cls)
    if known is None:
        return
    unknown = [name for name in options if name not in known]
    if not unknown:
        return
    guesses = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f" (did you mean {guesses[0]}?)" if guesses else ""
    raise click.BadParameter(
        f"{cls.__name__} takes no option {', '.join(map(repr, unknown))}{hint}; its options "
        f"are {', '.join(known)}.",
        param_hint="--option",
    )


@contextlib.contextmanager
def _current_folder_importable() -> Iterator[None]:
    """Put the current folder first on ``sys.path`` for one import."""
    folder = os.getcwd()
    added = folder not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)

"""``koa-cal`` commands that read the local cache: config, status, query, verify, versions, explain.

None of them creates a cache: on an instrument that has none yet they say
so and exit 1 (``verify --repair``, which fetches files, is the exception).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from ..database.reading import lifecycle_filter_value
from ..errors import InvalidRecordError, KOAError
from ..records import LIFECYCLE_FIELDS, validate_column_name
from . import output as out
from .support import (
    State,
    archive_display_url,
    cache_is_new,
    command_line_wording,
    emit,
    json_flag,
    load_selector,
    one_line,
    open_archive,
    open_store,
    parse_pairs,
    require_cache,
    time_bound,
)

logger = logging.getLogger(__name__)

__all__ = ["config", "explain", "query", "status", "verify", "versions"]

#: The settings ``koa-cal config`` can show without, and how to give each.
_REQUIRED_SETTINGS = {
    "instrument_name": ("--instrument", "KOA_INSTRUMENT_NAME"),
    "cache_dir": ("--cache-dir", "KOA_CALIBRATION_CACHE"),
}


@click.command()
@click.option(
    "--profile",
    "show_profile",
    is_flag=True,
    help="Show the instrument profile in force instead: where it came from, its "
    "calibration types, version families, required columns and FITS header map.",
)
@json_flag
@click.pass_obj
def config(state: State, show_profile: bool) -> None:
    """Show every setting, its value and where it came from.

    Sources are "argument" (a global option), "environment (NAME)" or
    "default"; secrets are masked. A required setting that is not given
    (the instrument, the cache folder) is shown as missing, with the option
    and variable that set it. Nothing is written.

    \b
    Examples:
      koa-cal config
      koa-cal --instrument liger --cache-dir ~/koa_cache config
      koa-cal config --json
      koa-cal --instrument hispec config --profile
    """
    if show_profile:
        _show_profile(state)
        return
    rows = _setting_rows(state)
    data = {row["setting"]: {"value": row["value"], "source": row["source"]} for row in rows}
    text = out.render_table(rows, ["setting", "value", "source"])
    missing = [row["setting"] for row in rows if row["source"].startswith("missing")]
    if missing:
        text += f"\nMissing: {', '.join(missing)}; every other command needs them."
    emit(state, data, text)


def _show_profile(state: State) -> None:
    """Print the profile in force for the instrument given (no cache folder needed)."""
    from ..profiles import load_profile
    from .profile_view import describe_profile, render_profile

    instrument = state.instrument or os.environ.get("KOA_INSTRUMENT_NAME", "").strip()
    if not instrument:
        option, variable = _REQUIRED_SETTINGS["instrument_name"]
        raise click.UsageError(f"Which instrument? Pass {option} NAME or set {variable}.")
    try:
        data = describe_profile(load_profile(instrument))
    except KOAError as exc:
        raise click.ClickException(str(exc)) from None
    emit(state, data, render_profile(data))


def _setting_rows(state: State) -> list[dict[str, str]]:
    """``{setting, value, source}`` rows; a missing required setting is a row that says so."""
    from ..config import profile_setting, resolve_config

    given = {
        "instrument_name": state.instrument,
        "cache_dir": state.cache_dir,
    }
    absent = {
        name
        for name, (_, variable) in _REQUIRED_SETTINGS.items()
        if not given[name] and not os.environ.get(variable)
    }
    # resolve_config refuses a missing instrument or cache folder: resolve every other
    # setting with stand-ins for them, and show those two as missing.
    placeholders = {name: "instrument" if name == "instrument_name" else "." for name in absent}
    cfg = resolve_config(
        placeholders.get("instrument_name", state.instrument),
        placeholders.get("cache_dir", state.cache_dir),
        url=state.url,
    )
    shown = list(cfg.rows())
    if "instrument_name" in absent:
        shown.append(("profile", "", "needs the instrument"))
    else:
        profile = profile_setting(cfg.instrument_name)
        shown.append(("profile", profile.shown(), profile.source))
    rows = []
    for name, value, source in shown:
        if name in absent:
            option, variable = _REQUIRED_SETTINGS[name]
            value, source = "", f"missing: pass {option} or set {variable}"
        elif "instrument_name" in absent and name in ("local_database_filename", "table_name"):
            if source == "default":
                value = value.replace("instrument", "<instrument>", 1)
        rows.append({"setting": name, "value": value, "source": source})
    return rows


@click.command()
@json_flag
@click.pass_obj
def status(state: State) -> None:
    """Show records, how far the cache is ahead of and behind the archive, and size.

    Records are counted per cal_type and origin. With an archive configured,
    also: its newest update, the records not pushed
    (here, not on the archive: koa-cal push uploads them) and not pulled (on
    the archive, new or newer than here: koa-cal sync pulls them). Files not
    downloaded are counted and the first ten named. Exit status 1 when the
    archive cannot be asked (the local part is still shown) or there is no
    cache yet.

    \b
    Examples:
      koa-cal status
      koa-cal --json status
    """
    from ..cache.report import archive_comparison, cache_status

    require_cache(state)
    failed = None
    with open_store(state, remote=True, create=False) as store:
        data = cache_status(store.cache, store.config.cache_max_size)
        archive: dict[str, Any] = {"url": getattr(store.remote_db, "display_url", None)}
        if store.remote_db is not None:
            try:
                archive["last_updated"] = store.get_last_updated(source="remote")
                archive.update(archive_comparison(store.local_db, store.remote_db))
            except (KOAError, OSError) as exc:  # the local state is still worth showing
                failed = archive["error"] = one_line(exc)
        data["archive"] = archive
    emit(state, data, out.render_status(data))
    if failed:
        raise click.ClickException(failed)


@click.command()
@click.option("--cal-type", help="Only this calibration type (dark, flat, arc, ...).")
@click.option(
    "--since",
    metavar="TIME",
    help="datetime_obs at or after this UTC time; a date (2025-03-03) means from its 00:00.",
)
@click.option(
    "--until",
    metavar="TIME",
    help="datetime_obs at or before this UTC time; a date (2025-03-03) includes that whole day.",
)
@click.option("--origin", help="Only this origin (LOCAL, KECK, ...).")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="Only records whose COLUMN equals VALUE; repeat for more (all must hold). "
    "retracted_at=, retract_reason= and published_at= work too (empty: none, e.g. live ones).",
)
@click.option(
    "--source",
    type=click.Choice(["local", "remote"]),
    default="local",
    show_default=True,
    help="local: the cache's database; remote: ask the archive (creates no cache).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table: aligned columns for reading; json: every field; csv: every field (or "
    "--columns), where text starting with =, +, -, @, a tab or a carriage return gets a "
    "leading ' so that spreadsheets do not run it as a formula (OWASP).",
)
@click.option(
    "--columns",
    metavar="COL,COL,...",
    help="Comma-separated columns for the table and CSV (default: id, filename, cal_type, "
    "cal_version, origin, datetime_obs, last_updated for the table; all for CSV).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), help="At most this many records (the earliest)."
)
@json_flag
@click.pass_obj
def query(
    state: State,
    cal_type: str | None,
    since: str | None,
    until: str | None,
    origin: str | None,
    where: tuple[str, ...],
    source: str,
    fmt: str,
    columns: str | None,
    limit: int | None,
) -> None:
    """List calibration records here (or on the archive), in time order.

    Records are sorted by datetime_obs, then cal_version. The count goes to
    stderr, so stdout holds only the listing. Retracted calibrations are
    listed too: every record carries retracted_at and retract_reason (empty
    while it is live) and published_at (when the archive published it), for
    --columns, --where, JSON and CSV.

    Tables and CSV show control characters and bidirectional overrides
    escaped (\\x1b, \\u202e), as JSON does; in CSV, text starting with =, +,
    -, @, a tab or a carriage return gets a leading ' so that a spreadsheet
    does not run it as a formula.

    \b
    Examples:
      koa-cal query --cal-type dark --since 2025-03-01 --until 2025-03-03
      koa-cal query --where spectrograph=yJ --where master_cal=1 --limit 5
      koa-cal query --format csv --columns filename,cal_version > darks.csv
      koa-cal query --source remote --origin KECK --format json
      koa-cal query --columns id,filename,retracted_at,retract_reason
      koa-cal query --where retracted_at=          (only the live ones)
    """
    from ..cache.report import time_order

    filters = parse_pairs(where, "--where")
    chosen = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    for column in chosen or []:
        try:
            validate_column_name(column)
        except InvalidRecordError as exc:
            raise click.BadParameter(str(exc), param_hint="--columns") from None
    kwargs = {"cal_type": cal_type, "origin": origin,
              "date_time_start": time_bound(since, "--since", end=False),
              "date_time_end": time_bound(until, "--until", end=True), **filters}  # fmt: skip
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    known: set[str] = set(LIFECYCLE_FIELDS)
    try:
        if source == "remote":
            records = _remote_query(state, kwargs)
        else:
            require_cache(state)
            with open_store(state, create=False) as store:
                records = store.query(with_lifecycle=True, **kwargs)
                known.update(store.local_db.columns)
    except InvalidRecordError as exc:  # e.g. a column name with a typo
        raise click.BadParameter(str(exc), param_hint="--where") from None
    if isinstance(records, dict):
        records = [records]
    records = sorted(records or [], key=time_order)
    _check_columns(chosen, known, records)
    records = records[:limit] if limit else records
    if state.json or fmt == "json":
        click.echo(out.render_json(records))
    elif fmt == "csv":
        click.echo(out.render_csv(records, chosen), nl=False)
    else:
        click.echo(out.render_table(records, chosen or out.DEFAULT_QUERY_COLUMNS))
        click.echo(out.count(len(records), "record"), err=True)


def _check_columns(chosen: list[str] | None, known: set[str], records: list[dict]) -> None:
    """Refuse ``--columns`` names that no record has, naming the columns there are.

    The columns known are the cache's (for a local query) and those of the
    records found; a remote query that found nothing cannot tell, and shows
    the names as given.

    Raises
    ------
    click.BadParameter
        If a chosen column is not known (exit status 2).
    """
    if not chosen:
        return
    for record in records:
        known.update(record)
    if len(known) == len(LIFECYCLE_FIELDS):
        return  # nothing to compare with
    unknown = [column for column in chosen if column not in known]
    if unknown:
        raise click.BadParameter(
            f"no column {', '.join(map(repr, unknown))}; the columns are "
            f"{', '.join(sorted(known))}.",
            param_hint="--columns",
        )


def _remote_query(state: State, filters: dict[str, Any]) -> list[dict]:
    """The archive's records matching ``filters``, retracted ones included, with their lives.

    The archive filters on the record columns; the filters on lifecycle
    fields are applied here, as the local query applies them. A v1 archive
    sends no lifecycle (and no retracted record): its records get the fields
    as none.

    Raises
    ------
    InvalidRecordError
        If a filter is invalid (a lifecycle time that is not a time).
    """
    wanted = {
        name: lifecycle_filter_value(name, filters.pop(name))
        for name in LIFECYCLE_FIELDS
        if name in filters
    }
    with open_archive(state) as remote:
        found = remote.query(include_retracted=True, **filters)
    records = [found] if isinstance(found, dict) else list(found or [])
    for record in records:
        for name in LIFECYCLE_FIELDS:
            record[name] = lifecycle_filter_value(name, record.get(name))
    return [r for r in records if all(r[name] == value for name, value in wanted.items())]


@click.command()
@click.option(
    "--repair",
    is_flag=True,
    help="Fetch fresh, verified copies of lost or damaged files from the archive.",
)
@json_flag
@click.pass_obj
def verify(state: State, repair: bool) -> None:
    """Check every cached file against its record (size, MD5).

    A record whose file was never downloaded (the state after `koa-cal sync`
    without --files) is "not downloaded yet": not a problem, and `koa-cal
    sync --files` fetches it. A file that was placed and then changed,
    shrank or vanished is "lost or damaged": exit status 1, and `koa-cal
    verify --repair` fetches a fresh copy (it needs the archive; it is the
    one form of verify that creates a cache when there is none).

    \b
    Examples:
      koa-cal verify
      koa-cal verify --repair
      koa-cal --json verify
    """
    from ..cache.report import verify_cache

    if not repair:
        require_cache(state)
    with open_store(
        state, remote=repair, probe=repair and cache_is_new(state), create=repair
    ) as store:
        report = verify_cache(store.cache, repair, store.download_calibration_file)
    for problem in report["problems"]:  # the library's advice, in the command line's words
        if problem.get("repair_error"):
            problem["repair_error"] = command_line_wording(problem["repair_error"])
    emit(state, report, out.render_verify(report, repair))
    if report["unrepaired"]:
        hint = "" if repair else "; run koa-cal verify --repair to fetch fresh copies"
        raise click.ClickException(
            f"{out.count(report['unrepaired'], 'file')} lost or damaged{hint}"
        )


@click.command()
@click.option(
    "--check",
    is_flag=True,
    help="Instead of listing, report duplicates, gaps and invalid versions; exit 1 if any.",
)
@json_flag
@click.pass_obj
def versions(state: State, check: bool) -> None:
    """List version families and their versions, or check their numbering.

    A family is the records that share the instrument profile's family
    columns (see koa-cal config) and origin; families are listed in the time
    order of their first calibration.

    \b
    Examples:
      koa-cal versions
      koa-cal versions --check
      koa-cal --json versions
    """
    from ..cache.report import version_families

    require_cache(state)
    with open_store(state, create=False) as store:
        if not check:
            families = version_families(store.local_db, store.get_version_family_values)
            emit(state, families, out.render_table(families, ["origin", "family", "versions"]))
            return
        issues = store.detect_version_issues()
    text = out.render_table(issues, ["issue", "origin", "family", "cal_version", "ids"])
    emit(state, issues, text if issues else "No version issues.")
    if issues:
        raise click.ClickException(f"{out.count(len(issues), 'version issue')} found")


@click.command()
@click.option(
    "--selector",
    "spec",
    required=True,
    metavar="MODULE:CLASS",
    help="The selector: MODULE:CLASS (a module in the current folder is found), or "
    "'nearest' / 'latest' for the built-in NearestInTimeSelector / LatestVersionSelector.",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A selector argument, e.g. cal_type=dark or max_days=3; repeat for more. One the "
    "selector does not take is refused, naming those it takes.",
)
@click.option(
    "--input",
    "frame",
    type=click.Path(exists=True, dir_okay=False),
    help="The science frame (FITS); its header gives the metadata.",
)
@click.option(
    "--meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Frame metadata instead of --input (datetime_obs=..., spectrograph=...); repeat.",
)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False),
    help="Record the choice in this run manifest (created, or extended if it exists).",
)
@click.option(
    "--as-of",
    metavar="TIME",
    help="Choose among the calibrations published and not retracted at this UTC time.",
)
@json_flag
@click.pass_obj
def explain(
    state: State,
    spec: str,
    options: tuple[str, ...],
    frame: str | None,
    meta: tuple[str, ...],
    manifest: str | None,
    as_of: str | None,
) -> None:
    """Show the candidates a selector considers, its choice and why.

    Give the frame either as a FITS file (--input) or as metadata (--meta).
    Exit status 1 when the selector chooses nothing; the conditions that
    eliminated the candidates are shown.

    \b
    Examples:
      koa-cal explain --selector nearest --option cal_type=dark --input sci_0042.fits
      koa-cal explain --selector latest --option cal_type=flat \\
          --meta datetime_obs=2025-03-02T06:00 --meta spectrograph=yJ
      koa-cal explain --selector myselectors:DarkSelector --input sci_0042.fits
      koa-cal explain --selector nearest --option cal_type=dark --input sci_0042.fits \\
          --manifest run.json
      koa-cal explain --selector nearest --option cal_type=dark --input sci_0042.fits \\
          --as-of 2025-03-01
    """
    if bool(frame) == bool(meta):
        raise click.UsageError("give either --input FRAME.fits or --meta KEY=VALUE ...")
    selector = load_selector(spec, parse_pairs(options, "--option", validate_keys=False))
    input_data: Any = frame
    if meta:
        input_data = parse_pairs(meta, "--meta")
        if "mjd_start" in input_data:
            try:
                input_data["mjd_start"] = float(input_data["mjd_start"])
            except ValueError:
                raise click.BadParameter(
                    "mjd_start must be a number.", param_hint="--meta"
                ) from None
    require_cache(state)
    with open_store(state, create=False) as store:
        report = store.explain(input_data, selector, as_of=time_bound(as_of, "--as-of", True))
        if manifest and report["chosen"] is not None:
            _record_choice(store, manifest, input_data, selector, report["chosen"])
    emit(state, report, out.render_explain(report))
    if report["chosen"] is None:
        raise click.ClickException(report["reason"])


def _record_choice(store: Any, path: str, input_data: Any, selector: Any, chosen: dict) -> None:
    """Add the choice to the manifest ``path`` (created, or extended if it exists)."""
    from ..manifest import ManifestRecorder

    recorder = ManifestRecorder.extending(path, store.instrument_name, archive_display_url(store))
    recorder.add("select_and_get_calibration", input_data, selector, chosen)
    recorder.write()

"""``koa-cal``: the calibration store from a terminal.

Every command takes the global options ``--instrument``, ``--cache-dir`` and
``--url`` (else ``KOA_INSTRUMENT_NAME``, ``KOA_CALIBRATION_CACHE`` and
``KOA_CALIBRATIONS_URL``, as the store reads them); the archive token comes
only from ``KOA_API_TOKEN`` (or the Keck observer login), never from the
command line. ``--json`` prints machine-readable output. Exit status: 0 on
success, 1 on failure, 2 on misuse. Errors are one line on stderr; ``--debug``
adds the traceback.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import InvalidRecordError, KOAError
from ..records import validate_column_name
from . import output as out
from .support import State, cache_is_new, load_selector, open_store, parse_pairs

logger = logging.getLogger(__name__)

__all__ = ["cli", "main"]


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).json = True


json_flag = click.option(
    "--json",
    is_flag=True,
    expose_value=False,
    callback=_set_json,
    help="Print JSON instead of text (also a global option).",
)


def _emit(state: State, data: Any, text: str | None = None) -> None:
    click.echo(out.render_json(data) if state.json or text is None else text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--instrument", metavar="NAME", help="Instrument (else KOA_INSTRUMENT_NAME).")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Calibration cache folder (else KOA_CALIBRATION_CACHE).",
)
@click.option("--url", metavar="URL", help="Archive URL (else KOA_CALIBRATIONS_URL).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=2,
    show_default=True,
    help="Retries of a failed archive request.",
)
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(__version__, prog_name="koa-cal")
@click.pass_context
def cli(ctx, instrument, cache_dir, url, as_json, retries, verbose, debug) -> None:
    """Manage a local calibration cache and keep it in step with the calibration archive."""
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("koa-cal: %(levelname)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger("koa_middleware").setLevel(level)
    state = ctx.ensure_object(State)
    state.instrument, state.cache_dir, state.url = instrument, cache_dir, url
    state.json = state.json or as_json
    state.retries = retries


@cli.command()
@json_flag
@click.pass_obj
def config(state: State) -> None:
    """Show every setting, its value and where it came from."""
    from ..config import profile_setting, resolve_config

    cfg = resolve_config(state.instrument, state.cache_dir, url=state.url)
    profile = profile_setting(cfg.instrument_name)
    shown = [*cfg.rows(), ("profile", profile.shown(), profile.source)]
    rows = [{"setting": n, "value": v, "source": s} for n, v, s in shown]
    data = {row["setting"]: {"value": row["value"], "source": row["source"]} for row in rows}
    _emit(state, data, out.render_table(rows, ["setting", "value", "source"]))


@cli.command()
@json_flag
@click.pass_obj
def status(state: State) -> None:
    """Show records, newest updates, missing files and cache size.

    Records are counted per cal_type and origin; the newest last_updated is
    shown here and on the archive (when one is configured).
    """
    from ..cache.report import cache_status

    failed = None
    with open_store(state, remote=True) as store:
        data = cache_status(store)
        archive: dict[str, Any] = {"url": getattr(store.remote_db, "display_url", None)}
        if store.remote_db is not None:
            try:
                archive["last_updated"] = store.get_last_updated(source="remote")
            except (KOAError, OSError) as exc:  # the local state is still worth showing
                failed = archive["error"] = _one_line(exc)
        data["archive"] = archive
    _emit(state, data, out.render_status(data))
    if failed:
        raise click.ClickException(failed)


@cli.command()
@click.option("--mode", type=click.Choice(["id", "last_updated"]), default="id", show_default=True)
@click.option("--files", is_flag=True, help="Also download the files of records missing locally.")
@json_flag
@click.pass_obj
def sync(state: State, mode: str, files: bool) -> None:
    """Pull new and changed records (and with --files their files).

    Records the archive sent that cannot be stored here are set aside (listed,
    tried again by the next sync); a file the archive cannot serve is skipped
    with a warning. Both are counted in the summary.
    """
    from ..client.downloads import progress_bar
    from ..errors import AuthenticationError, RemoteUnavailableError

    with open_store(state, remote=True, probe=True) as store:
        added = store.sync_records_from_remote(mode=mode)
        report = store.last_sync
        set_aside = dict(getattr(report, "set_aside", {}) or {})
        fetched, size = [], 0
        skipped: dict[str, str] = {}
        if files:
            missing = store.get_missing_local_files()
            with progress_bar(len(missing), "files", store.config.progress, unit="file") as bar:
                for record in missing:
                    try:
                        fetched.append(store.download_calibration_file(record))
                    except (RemoteUnavailableError, AuthenticationError):
                        raise
                    except KOAError as exc:
                        skipped[record["id"]] = _one_line(exc)
                        logger.warning(
                            "Skipped the file of calibration %s (%s): %s",
                            record["id"],
                            record["filename"],
                            _one_line(exc),
                        )
                    else:
                        size += int(record.get("file_size") or 0)
                    bar.update(1)
        data = {
            "archive": store.remote_db.display_url,
            "records_added": len(added),
            "records_set_aside": len(set_aside),
            "set_aside": set_aside,
            "records_total": len(store.local_db),
            "files_downloaded": len(fetched),
            "files_skipped": len(skipped),
            "skipped_files": skipped,
            "bytes_downloaded": size,
        }
    text = f"Pulled {len(added)} new or changed record(s) from {data['archive']}"
    text += f" ({data['records_total']} in the cache)."
    if set_aside:
        text += f"\nSet aside {len(set_aside)} record(s) that cannot be stored here"
        text += " (the next sync tries them again):"
        text += "".join(f"\n  {cal_id}: {reason}" for cal_id, reason in set_aside.items())
    if files:
        text += f"\nDownloaded {len(fetched)} file(s), {out.human_size(size)}."
        if skipped:
            text += f"\nSkipped {len(skipped)} file(s) the archive could not serve:"
            text += "".join(f"\n  {cal_id}: {reason}" for cal_id, reason in skipped.items())
    _emit(state, data, text)


@cli.command()
@click.option("--cal-type", help="Only this calibration type.")
@click.option("--since", help="datetime_obs at or after this UTC time.")
@click.option("--until", help="datetime_obs at or before this UTC time.")
@click.option("--origin", help="Only this origin.")
@click.option("--where", "where", multiple=True, metavar="COLUMN=VALUE", help="Equality filter.")
@click.option(
    "--source", type=click.Choice(["local", "remote"]), default="local", show_default=True
)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.option("--columns", help="Comma-separated columns for the table and CSV.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many records.")
@json_flag
@click.pass_obj
def query(state, cal_type, since, until, origin, where, source, fmt, columns, limit) -> None:
    """List calibration records here (or on the archive)."""
    filters = parse_pairs(where, "--where")
    chosen = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    for column in chosen or []:
        try:
            validate_column_name(column)
        except InvalidRecordError as exc:
            raise click.BadParameter(str(exc), param_hint="--columns") from None
    kwargs = {"cal_type": cal_type, "origin": origin, "date_time_start": since,
              "date_time_end": until, **filters}  # fmt: skip
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    with open_store(state, remote=source == "remote", probe=source == "remote") as store:
        try:
            records = store.query(source=source, **kwargs)
        except InvalidRecordError as exc:  # e.g. a column name with a typo
            raise click.BadParameter(str(exc), param_hint="--where") from None
    if isinstance(records, dict):
        records = [records]
    records = list(records or [])[:limit] if limit else list(records or [])
    if state.json or fmt == "json":
        click.echo(out.render_json(records))
    elif fmt == "csv":
        click.echo(out.render_csv(records, chosen), nl=False)
    else:
        click.echo(out.render_table(records, chosen or out.DEFAULT_QUERY_COLUMNS))
        click.echo(f"{len(records)} record(s)", err=True)


@cli.command()
@click.argument("items", nargs=-1, required=True, metavar="ID_OR_FILENAME...")
@json_flag
@click.pass_obj
def get(state: State, items: tuple[str, ...]) -> None:
    """Print local paths of calibrations, downloading what is missing."""
    results, errors = [], []
    with open_store(state, remote=True, probe=cache_is_new(state)) as store:
        for item in items:
            try:
                path, record = store.get_calibration(item)
            except Exception as exc:
                errors.append(f"{item}: {_one_line(exc)}")
                results.append({"input": item, "error": errors[-1]})
                continue
            results.append({"input": item, "path": path, "id": record["id"],
                            "filename": record["filename"]})  # fmt: skip
    _emit(state, results, "\n".join(r["path"] for r in results if "path" in r) or None)
    for line in errors[:-1]:
        click.echo(f"Error: {line}", err=True)
    if errors:
        raise click.ClickException(errors[-1])


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--cal-type", help="Calibration type, when the header does not say.")
@click.option("--origin", help="Origin to register under (else the store's).")
@click.option("--new-version", is_flag=True, help="Register as a new version of its family.")
@click.option("--set", "fields", multiple=True, metavar="FIELD=VALUE", help="Set a record field.")
@json_flag
@click.pass_obj
def register(state, files, cal_type, origin, new_version, fields) -> None:
    """Register FITS calibration FILES into the local cache."""
    from ..fits import FITSCalibration

    overrides: dict[str, Any] = parse_pairs(fields, "--set")
    if cal_type:
        overrides["cal_type"] = cal_type
    models = []
    for name in files:  # read every header first: a bad file stops all before anything is stored
        model = FITSCalibration(name, **overrides)
        try:
            model.to_record()
        except InvalidRecordError as exc:
            missing = getattr(exc, "missing_fields", None)
            if missing:
                flags = " or ".join(
                    "--cal-type" if f == "cal_type" else f"--set {f}=VALUE" for f in missing
                )
                raise InvalidRecordError(f"{exc} With koa-cal register: {flags}.") from exc
            raise
        models.append(model)
    rows = []
    with open_store(state) as store:
        for model in models:
            path, record = store.register_calibration(model, origin=origin, new_version=new_version)
            new_id = model.to_record().get("id")
            rows.append({"file": str(model.path), "status": "registered" if record["id"] == new_id
                         else "already cached", "id": record["id"],
                         "cal_version": record["cal_version"], "path": path})  # fmt: skip
    _emit(state, rows, out.render_table(rows, ["file", "status", "cal_version", "id"]))


@cli.command()
@json_flag
@click.pass_obj
def push(state: State) -> None:
    """Upload local calibrations the archive lacks.

    Each file is uploaded (and checked by MD5 on the archive) before its record.
    """
    with open_store(state, remote=True, probe=True) as store:
        pushed = store.sync_records_to_remote()
        url = store.remote_db.display_url
    rows = [{k: r.get(k) for k in ("id", "filename", "cal_type", "cal_version", "file_size")}
            for r in pushed]  # fmt: skip
    size = sum(int(r.get("file_size") or 0) for r in rows)
    data = {"archive": url, "pushed": len(rows), "bytes": size, "records": rows}
    text = f"Pushed {len(rows)} calibration(s), {out.human_size(size)}, to {url}."
    if rows:
        text = out.render_table(rows, ["filename", "cal_type", "cal_version", "id"]) + "\n" + text
    _emit(state, data, text)


@cli.command()
@click.option("--repair", is_flag=True, help="Fetch fresh copies of missing or corrupt files.")
@json_flag
@click.pass_obj
def verify(state: State, repair: bool) -> None:
    """Check cached files against their records (size, MD5)."""
    from ..cache.report import verify_cache

    with open_store(state, remote=repair, probe=repair and cache_is_new(state)) as store:
        report = verify_cache(store, repair=repair)
    lines = []
    if report["problems"]:
        columns = ["filename", "problem", "detail"] + (["repaired"] if repair else [])
        rows = [dict(p, detail=p.get("repair_error") or p["detail"]) for p in report["problems"]]
        lines.append(out.render_table(rows, columns))
    lines.append(
        f"Checked {report['checked']} file(s): {report['ok']} intact, "
        f"{len(report['problems'])} with problems"
        + (f", {report['unrepaired']} not repaired." if repair else ".")
    )
    _emit(state, report, "\n".join(lines))
    if report["unrepaired"]:
        hint = "" if repair else "; run koa-cal verify --repair to fetch fresh copies"
        raise click.ClickException(f"{report['unrepaired']} file(s) missing or corrupt{hint}")


@cli.command()
@click.option("--check", is_flag=True, help="List version problems; exit 1 if there are any.")
@json_flag
@click.pass_obj
def versions(state: State, check: bool) -> None:
    """List version families, or check their numbering."""
    from ..cache.report import version_families

    with open_store(state) as store:
        if not check:
            families = version_families(store)
            _emit(state, families, out.render_table(families, ["origin", "family", "versions"]))
            return
        issues = store.detect_version_issues()
    text = out.render_table(issues, ["issue", "origin", "family", "cal_version", "ids"])
    _emit(state, issues, text if issues else "No version issues.")
    if issues:
        raise click.ClickException(f"{len(issues)} version issue(s) found")


@cli.command()
@click.option(
    "--selector",
    "spec",
    required=True,
    metavar="MODULE:CLASS",
    help="The selector: MODULE:CLASS, or 'nearest' / 'latest' for the built-ins.",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A selector argument, e.g. cal_type=dark or max_days=3.",
)
@click.option(
    "--input",
    "frame",
    type=click.Path(exists=True, dir_okay=False),
    help="The science frame (FITS).",
)
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Frame metadata instead.")
@json_flag
@click.pass_obj
def explain(state, spec, options, frame, meta) -> None:  # fmt: skip
    """Show the candidates a selector considers, its choice and why."""
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
    with open_store(state) as store:
        report = selector.explain(input_data, store.local_db)
    _emit(state, report, out.render_explain(report))
    if report["chosen"] is None:
        raise click.ClickException(report["reason"])


@cli.command()
@click.option("--keep", type=click.Path(file_okay=False), help="Keep everything in this folder.")
@json_flag
@click.pass_obj
def demo(state: State, keep: str | None) -> None:
    """Run the whole job end to end on synthetic HISPEC data.

    Starts a koa-archive on a free local port over a temporary folder,
    publishes synthetic calibrations, syncs a fresh cache, selects darks and
    flats for science frames, downloads and verifies them, and shuts down.
    """
    from .demo import run_demo

    summary = run_demo(keep=Path(keep) if keep else None, echo=None if state.json else click.echo)
    if state.json:
        click.echo(out.render_json(summary))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> None:
    """Run ``koa-cal``; the entry point of the console script.

    Parameters
    ----------
    argv : list of str | None
        The arguments; None reads ``sys.argv[1:]``.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="koa-cal", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        sys.exit(2)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "koa-cal"
        click.echo(f"Error: {_one_line(exc.format_message())} (see '{where} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Error: aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {_one_line(exc)}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

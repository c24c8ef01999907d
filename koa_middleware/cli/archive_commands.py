"""``koa-cal`` commands that bring calibrations from the archive or send them: sync, get, push.

They create the instrument's cache when there is none, after making sure the
archive answers. A download of many files shows one progress bar counting
bytes (on a terminal, unless ``KOA_PROGRESS=0``); Ctrl-C stops with exit
status 130 and says how far the command got.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from ..errors import KOAError
from . import output as out
from .support import (
    State,
    cache_is_new,
    command_line_wording,
    emit,
    json_flag,
    one_bar_for_many,
    one_line,
    open_store,
    summarize_interrupt,
)

logger = logging.getLogger(__name__)

__all__ = ["get", "push", "sync"]

_RESUME = "run the same command to resume"


@click.command()
@click.option(
    "--mode",
    type=click.Choice(["id", "last_updated"]),
    default="id",
    show_default=True,
    help="id: pull every record whose id the cache lacks (complete); last_updated: only "
    "what changed since the cache's newest update (fast, through the archive's changes "
    "feed where it has one).",
)
@click.option(
    "--files",
    is_flag=True,
    help="Also download the files of records that have none in the cache (resumable).",
)
@json_flag
@click.pass_obj
def sync(state: State, mode: str, files: bool) -> None:
    """Pull new and changed records from the archive (and with --files their files).

    Records the archive sent that cannot be stored here are set aside (listed,
    tried again by the next sync); a file the archive cannot serve is skipped
    with a warning. Both are counted in the summary. Ctrl-C stops with exit
    status 130; running the same command again resumes.

    \b
    Examples:
      koa-cal sync
      koa-cal sync --files
      koa-cal sync --mode last_updated
      koa-cal --url http://archive.example:8750/api/calibrations sync --files
    """
    with open_store(state, remote=True, probe=True) as store:
        with summarize_interrupt(lambda: f"the sync of records stopped; {_RESUME}"):
            added = store.sync_records_from_remote(mode=mode)
        report = store.last_sync
        set_aside = dict(getattr(report, "set_aside", {}) or {})
        fetched, size, skipped = _download_missing_files(store) if files else ([], 0, {})
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
    text = f"Pulled {out.count(len(added), 'new or changed record')} from {data['archive']}"
    text += f" ({out.count(data['records_total'], 'record')} in the cache)."
    if set_aside:
        text += f"\nSet aside {out.count(len(set_aside), 'record')} that cannot be stored here"
        text += " (the next sync tries them again):"
        text += "".join(
            f"\n  {out.cell(cal_id)}: {out.cell(reason)}" for cal_id, reason in set_aside.items()
        )
    if files:
        text += f"\nDownloaded {out.count(len(fetched), 'file')}, {out.human_size(size)}."
        if skipped:
            text += f"\nSkipped {out.count(len(skipped), 'file')} the archive could not serve:"
            text += "".join(
                f"\n  {out.cell(cal_id)}: {out.cell(reason)}" for cal_id, reason in skipped.items()
            )
    emit(state, data, text)


def _download_missing_files(store: Any) -> tuple[list[str], int, dict[str, str]]:
    """Download, in time order and under one bar, the files of records that have none here.

    Returns
    -------
    tuple
        The paths downloaded, their bytes, and id -> reason of the files the
        archive could not serve (skipped with a warning).

    Raises
    ------
    Interrupted
        On Ctrl-C, saying how many files were downloaded.
    RemoteUnavailableError, AuthenticationError
        If the archive cannot be reached or refuses the credentials.
    """
    from ..cache.report import time_order
    from ..client.downloads import progress_bar
    from ..errors import AuthenticationError, RemoteUnavailableError

    missing = sorted(store.get_missing_local_files(), key=time_order)
    total = sum(int(r.get("file_size") or 0) for r in missing)
    fetched: list[str] = []
    size = 0
    skipped: dict[str, str] = {}

    def summary() -> str:
        return f"{len(fetched):,} of {len(missing):,} files downloaded; {_RESUME}"

    with (
        summarize_interrupt(summary),
        one_bar_for_many(store) as progress,
        progress_bar(total, "files", progress) as bar,
    ):
        for record in missing:
            try:
                fetched.append(store.download_calibration_file(record))
            except (RemoteUnavailableError, AuthenticationError):
                raise
            except KOAError as exc:
                skipped[record["id"]] = one_line(exc)
                logger.warning(
                    "Skipped the file of calibration %s (%s): %s",
                    record["id"],
                    record["filename"],
                    one_line(exc),
                )
            else:
                size += int(record.get("file_size") or 0)
            bar.update(int(record.get("file_size") or 0))
    return fetched, size, skipped


@click.command()
@click.argument("items", nargs=-1, required=True, metavar="ID_OR_FILENAME...")
@json_flag
@click.pass_obj
def get(state: State, items: tuple[str, ...]) -> None:
    """Print the local path of each calibration, downloading what is missing.

    Each item is a calibration id or a file name; one not in the cache is
    looked up on the archive. Paths go to stdout one per line, in the order
    given; an item that fails is named on stderr and the exit status is 1.

    \b
    Examples:
      koa-cal get 0b4e28ba-2fa1-4d2b-883f-0016d3cca427
      koa-cal get hispec_yj_dark_20250301_v001.fits hispec_hk_flat_20250305_v003.fits
      koa-cal --json get hispec_yj_dark_20250301_v001.fits
    """
    from ..client.downloads import progress_bar

    results: list[dict[str, Any]] = []
    errors: list[str] = []
    with open_store(state, remote=True, probe=cache_is_new(state)) as store:
        total = sum(int((_cached_record(store, item) or {}).get("file_size") or 0)
                    for item in items)  # fmt: skip

        def summary() -> str:
            done = sum(1 for r in results if "path" in r)
            return f"{done:,} of {len(items):,} calibrations fetched; {_RESUME}"

        with (
            summarize_interrupt(summary),
            one_bar_for_many(store) as progress,
            progress_bar(total, "files", progress if len(items) > 1 else False) as bar,
        ):
            for item in items:
                try:
                    path, record = store.get_calibration(item)
                except (KOAError, OSError) as exc:
                    errors.append(f"{item}: {command_line_wording(one_line(exc))}")
                    results.append({"input": item, "error": errors[-1]})
                    continue
                results.append({"input": item, "path": path, "id": record["id"],
                                "filename": record["filename"]})  # fmt: skip
                bar.update(int(record.get("file_size") or 0))
    paths = [r["path"] for r in results if "path" in r]
    if state.json or paths:
        emit(state, results, "\n".join(paths))
    for line in errors[:-1]:
        click.echo(f"Error: {out.escape_controls(line)}", err=True)
    if errors:
        raise click.ClickException(errors[-1])


def _cached_record(store: Any, item: str) -> dict | None:
    """The local record of an id or file name, or None (also for an item that is neither)."""
    try:
        return store.calibration_record_in_cache(item)
    except (KOAError, ValueError):
        return None


@click.command()
@json_flag
@click.pass_obj
def push(state: State) -> None:
    """Upload the local calibrations the archive lacks (needs a 'write' token).

    Each file is uploaded (and checked by MD5 on the archive) before any
    record, so the archive never lists a calibration it cannot serve. The
    cache then keeps the archive's version of each record pushed, so status
    and sync find nothing of it to pull. The retractions made here (by
    `koa-cal retract`, of this cache's origin) go too, and are counted.
    Ctrl-C stops with exit status 130; running the same command again
    resumes (files already on the archive are not sent twice).

    \b
    Examples:
      koa-cal push
      koa-cal --json push
    """
    from ..cache.report import time_order

    with open_store(state, remote=True, probe=True) as store:
        with summarize_interrupt(lambda: f"the push stopped; {_RESUME}"):
            pushed = store.sync_records_to_remote()
        url = store.remote_db.display_url
        retracted = sorted(store.last_pushed_retractions)
    rows = [{k: r.get(k) for k in ("id", "filename", "cal_type", "cal_version", "file_size",
                                   "datetime_obs")}
            for r in sorted(pushed, key=time_order)]  # fmt: skip
    size = sum(int(r.get("file_size") or 0) for r in rows)
    data = {"archive": url, "pushed": len(rows), "bytes": size, "records": rows,
            "retractions": retracted}  # fmt: skip
    text = (
        f"Pushed {out.count(len(rows), 'calibration')} and "
        f"{out.count(len(retracted), 'retraction')}, {out.human_size(size)}, to {url}."
    )
    if rows:
        text = out.render_table(rows, ["filename", "cal_type", "cal_version", "id"]) + "\n" + text
    emit(state, data, text)

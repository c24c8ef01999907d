"""``koa-cal`` commands of a calibration's life: retract, unretract, remove, prune, manifest."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from . import output as out
from .support import State, emit, json_flag, open_store, require_cache

logger = logging.getLogger(__name__)

__all__ = ["manifest", "prune", "remove", "retract", "unretract"]


@click.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--reason", required=True, help="Why (kept with the retraction; shown by explain).")
@json_flag
@click.pass_obj
def retract(state: State, ids: tuple[str, ...], reason: str) -> None:
    """Withdraw calibrations registered here: no selector chooses them any more.

    Records and files stay; `get` of a retracted id refuses unless
    KOA_ALLOW_RETRACTED=1. Calibrations from the archive are retracted there
    (koa-archive retract) and reach this cache with the next sync.

    \b
    Examples:
      koa-cal retract 1b4e28ba-2fa1-4d2b-883f-0016d3cca427 --reason "hot pixels"
    """
    require_cache(state)
    with open_store(state) as store:
        done = store.retract(list(ids), reason)
    emit(state, {"retracted": done, "reason": reason},
         f"Retracted {out.count(len(done), 'calibration')}: {reason}")  # fmt: skip


@click.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@json_flag
@click.pass_obj
def unretract(state: State, ids: tuple[str, ...]) -> None:
    """Make calibrations retracted here selectable again.

    \b
    Examples:
      koa-cal unretract 1b4e28ba-2fa1-4d2b-883f-0016d3cca427
    """
    require_cache(state)
    with open_store(state) as store:
        done = store.unretract(list(ids))
    emit(state, {"unretracted": done}, f"{out.count(len(done), 'calibration')} live again.")


@click.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--force", is_flag=True, help="Also remove calibrations that came from elsewhere.")
@json_flag
@click.pass_obj
def remove(state: State, ids: tuple[str, ...], force: bool) -> None:
    """Delete calibrations registered here by mistake: their records and files.

    A calibration from the archive is refused without --force: the next sync
    would bring it back (retract it on the archive instead).

    \b
    Examples:
      koa-cal remove 1b4e28ba-2fa1-4d2b-883f-0016d3cca427
    """
    require_cache(state)
    with open_store(state) as store:
        removed = store.remove(list(ids), force=force)
    rows = [{"id": r["id"], "filename": r["filename"]} for r in removed]
    emit(state, rows, f"Removed {out.count(len(rows), 'calibration')} and their files.")


@click.command()
@click.option(
    "--max-size",
    metavar="SIZE",
    help="Size the files may take, e.g. 50GiB or 500MB (else KOA_CACHE_MAX_SIZE).",
)
@json_flag
@click.pass_obj
def prune(state: State, max_size: str | None) -> None:
    """Remove the least recently used files until the cache fits in SIZE.

    The size is --max-size, else KOA_CACHE_MAX_SIZE; without either the
    command is misused (exit status 2).

    Records stay (a removed file is fetched again when asked for). Files in use
    by a running process, and files of this cache's origin that the archive
    lacks, are never removed.

    \b
    Examples:
      koa-cal prune --max-size 50GiB
      KOA_CACHE_MAX_SIZE=500MB koa-cal prune
    """
    from ..config import resolve_config

    if max_size is None:
        cfg = resolve_config(state.instrument, state.cache_dir, url=state.url)
        if cfg.cache_max_size is None:
            raise click.UsageError(
                "no size to prune to: give --max-size SIZE (e.g. --max-size 50GiB) or set "
                "KOA_CACHE_MAX_SIZE."
            )
    require_cache(state)
    with open_store(state, remote=True) as store:
        report = store.prune(max_size)
    data = {
        "limit": report.limit,
        "size_before": report.size_before,
        "size_after": report.size_after,
        "removed": report.removed,
        "kept_in_use": report.kept_in_use,
        "kept_local": report.kept_local,
    }
    text = (
        f"Removed {out.count(len(report.removed), 'file')}, "
        f"{out.human_size(report.size_before - report.size_after)}; the cache's files take "
        f"{out.human_size(report.size_after)} of {out.human_size(report.limit)}."
    )
    if report.kept_in_use:
        text += f"\nKept {out.count(len(report.kept_in_use), 'file')} in use by a running process."
    if report.kept_local:
        text += (
            f"\nKept {out.count(len(report.kept_local), 'file')} of this cache's origin that "
            "the archive lacks (koa-cal push uploads them)."
        )
    emit(state, data, text)
    if report.size_after > report.limit:
        raise click.ClickException("The cache's files still exceed the size; see above why.")


@click.group()
def manifest() -> None:
    """Show, verify or fetch the calibrations a run manifest pins.

    A manifest is written by store.record_manifest() or koa-cal explain
    --manifest, and replayed by CalibrationStore(..., manifest=PATH).

    \b
    Examples:
      koa-cal manifest show run.json
      koa-cal manifest verify run.json
      koa-cal manifest fetch run.json
    """


@manifest.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
@json_flag
@click.pass_obj
def manifest_show(state: State, path: str) -> None:
    """List the calibrations a manifest pins.

    \b
    Examples:
      koa-cal manifest show run.json
    """
    from ..manifest import read_manifest

    document = read_manifest(path)
    rows = [
        {"call": e["call"], "input": e["input"].get("name"), **e["chosen"]}
        for e in document["entries"]
    ]
    head = (
        f"{out.cell(Path(path).name)}: {out.count(len(rows), 'entry', 'entries')} recorded "
        f"{out.cell(document.get('created'))} with koa_middleware "
        f"{out.cell(document.get('library_version'))} "
        f"from {out.cell(document.get('archive_url') or 'no archive')}"
    )
    table = out.render_table(rows, ["input", "filename", "cal_version", "id"])
    emit(state, document, head + "\n" + table)


@manifest.command("verify")
@click.argument("path", type=click.Path(dir_okay=False))
@json_flag
@click.pass_obj
def manifest_verify(state: State, path: str) -> None:
    """Check that the cache holds every pinned calibration with the pinned bytes.

    Exit status 1 if one is missing or differs (koa-cal manifest fetch gets
    what is missing).

    \b
    Examples:
      koa-cal manifest verify run.json
    """
    from ..manifest import verify_manifest

    require_cache(state)
    with open_store(state, create=False) as store:
        problems = verify_manifest(store.cache, path)
    lines = [f"{out.cell(p['id'])}: {out.cell(p['problem'])}" for p in problems]
    emit(state, {"problems": problems},
         "\n".join(lines) or "Every pinned file is here with its pinned bytes.")  # fmt: skip
    if problems:
        raise click.ClickException(
            f"{out.count(len(problems), 'pinned calibration')} missing or different; run koa-cal "
            "manifest fetch to get the missing ones."
        )


@manifest.command("fetch")
@click.argument("path", type=click.Path(dir_okay=False))
@json_flag
@click.pass_obj
def manifest_fetch(state: State, path: str) -> None:
    """Download every pinned calibration the cache lacks, checking the pinned MD5.

    \b
    Examples:
      koa-cal manifest fetch run.json
    """
    from ..manifest import fetch_manifest

    with open_store(state, remote=True, probe=True) as store:
        paths = fetch_manifest(store, path)
    emit(state, {"paths": paths}, "\n".join(paths))

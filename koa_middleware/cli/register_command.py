"""``koa-cal register``: FITS calibration files into the local cache.

Headers are read through the instrument profile's FITS header map, the same
one the store and ``koa-archive ingest`` use. Each file is reported as
"registered" (a new record), "already cached" (its family already holds a
calibration with the same bytes) or "skipped" (its family already holds a
calibration with other bytes: nothing is stored for it, and the exit status
is 1; ``--new-version`` registers it as the family's next version).
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidRecordError
from ..hashing import file_md5
from . import output as out
from .support import (
    State,
    command_line_wording,
    emit,
    json_flag,
    open_store,
    parse_pairs,
    summarize_interrupt,
)

logger = logging.getLogger(__name__)

__all__ = ["register", "registration_status"]


def registration_status(new_id: str | None, record: dict, file_md5: str) -> str:
    """What registering one file did, as ``koa-cal register`` reports it.

    Parameters
    ----------
    new_id : str | None
        The id the model carried into registration.
    record : dict
        The record registration returned.
    file_md5 : str
        The MD5 of the user's file.

    Returns
    -------
    str
        ``"registered"`` (the returned record is the new one), ``"already
        cached"`` (another record of the family with the same bytes) or
        ``"skipped"`` (another record of the family with other bytes).

    Examples
    --------
    >>> registration_status("a", {"id": "b", "file_md5": "ff"}, "ff")
    'already cached'
    >>> registration_status("a", {"id": "b", "file_md5": "ff"}, "00")
    'skipped'
    """
    if new_id is not None and record.get("id") == new_id:
        return "registered"
    same = str(record.get("file_md5") or "").lower() == file_md5.lower()
    return "already cached" if same else "skipped"


def _name_taken(exc: InvalidRecordError, path: Path, done: list[dict[str, Any]]) -> str:
    """Say which calibration uses the file's name, and the command that registers it anyway."""
    name: str = exc.filename_taken  # type: ignore[attr-defined]
    owner = exc.taken_by  # type: ignore[attr-defined]
    stem, dot, suffix = name.partition(".")
    other = f"{stem}_{file_md5(path)[:8]}{dot}{suffix}"
    command = f"koa-cal register --set filename={shlex.quote(other)} {shlex.quote(str(path))}"
    if owner is None:
        what = f"A file named {name} is already in the cache, with no record"
    else:
        what = (
            f"Another calibration, {owner['id']} (cal_type {owner.get('cal_type')}), already "
            f"uses the file name {name} in this cache"
        )
    before = f" ({out.count(len(done), 'file')} registered before it)" if done else ""
    return (
        f"{path}: {what}, so this file was not registered{before}. Register it under "
        f"another name, with the other options you gave: {command}"
    )


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--cal-type",
    help="Calibration type (dark, flat, arc, ...) when the header does not say (IMAGETYP).",
)
@click.option(
    "--origin",
    help="Origin to register under (else KOA_CALIBRATION_ORIGIN, else LOCAL).",
)
@click.option(
    "--new-version",
    is_flag=True,
    help="When the file's version family already holds a calibration, register this one "
    "as the family's next version (002, ...) instead of skipping it.",
)
@click.option(
    "--set",
    "fields",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Set a record field whatever the header says (e.g. spectrograph=HK); repeat.",
)
@json_flag
@click.pass_obj
def register(
    state: State,
    files: tuple[str, ...],
    cal_type: str | None,
    origin: str | None,
    new_version: bool,
    fields: tuple[str, ...],
) -> None:
    """Register FITS calibration FILES into the local cache.

    Every header is read first (through the instrument profile's header map),
    so a bad file stops the command before anything is stored. Each file is
    then "registered", "already cached" (its family already holds the same
    bytes) or "skipped" (its family holds other bytes; exit status 1, and
    --new-version registers it as the next version). Creates the cache when
    there is none.

    \b
    Examples:
      koa-cal register master_dark_20250301.fits master_flat_20250301.fits
      koa-cal register --cal-type bias --set spectrograph=HK bias.fits
      koa-cal register --new-version master_dark_20250301_reprocessed.fits
    """
    from ..config import resolve_config
    from ..fits import FITSCalibration
    from ..profiles import load_profile

    overrides: dict[str, Any] = parse_pairs(fields, "--set")
    if cal_type:
        overrides["cal_type"] = cal_type
    cfg = resolve_config(state.instrument, state.cache_dir, url=state.url)
    profile = load_profile(cfg.instrument_name)
    models = []
    for name in files:  # read every header first: a bad file stops all before anything is stored
        model = FITSCalibration(name, profile=profile, **overrides)
        try:
            model.to_record()
        except InvalidRecordError as exc:
            if getattr(exc, "missing_fields", None):
                # The library's advice names Python arguments: say it with the options.
                words = command_line_wording(str(exc)).replace("--set cal_type=", "--cal-type ")
                raise InvalidRecordError(words) from exc
            raise
        models.append(model)
    rows: list[dict[str, Any]] = []

    def summary() -> str:
        return (
            f"{len(rows):,} of {len(models):,} files registered; run the same command to "
            "resume (files done are then reported as already cached)"
        )

    with open_store(state) as store, summarize_interrupt(summary):
        for model in models:
            try:
                path, record = store.register_calibration(
                    model, origin=origin, new_version=new_version
                )
            except InvalidRecordError as exc:
                if getattr(exc, "filename_taken", None) is None:
                    raise
                raise click.ClickException(_name_taken(exc, model.path, rows)) from exc
            status = registration_status(model.to_record().get("id"), record, file_md5(model.path))
            rows.append({"file": str(model.path), "status": status, "id": record["id"],
                         "cal_version": record["cal_version"], "path": path})  # fmt: skip
    emit(state, rows, out.render_table(rows, ["file", "status", "cal_version", "id"]))
    skipped = sum(1 for row in rows if row["status"] == "skipped")
    if skipped:
        raise click.ClickException(
            f"{out.count(skipped, 'file')} skipped: the version family already holds a "
            "calibration with other bytes; koa-cal register --new-version registers a "
            "file as the family's next version."
        )

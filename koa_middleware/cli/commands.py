"""``koa-cal``: the calibration store from a terminal.

Every command takes the global options ``--instrument``, ``--cache-dir`` and
``--url`` (else ``KOA_INSTRUMENT_NAME``, ``KOA_CALIBRATION_CACHE`` and
``KOA_CALIBRATIONS_URL``, as the store reads them); a command that would create
the cache of an instrument with no profile refuses, taking the name for a typo,
unless ``--new-instrument`` is given; the archive token comes
only from ``KOA_API_TOKEN`` (or the Keck observer login), never from the
command line. ``--json`` prints machine-readable output. Exit status: 0 on
success, 1 on failure, 2 on misuse, 130 on Ctrl-C. Errors are one line on
stderr; ``--debug`` adds the traceback. Library warnings (WARNING and above)
go to stderr.

The commands live by topic: :mod:`.cache_commands` (reading the cache),
:mod:`.archive_commands` (sync, get, push), :mod:`.register_command`; this
module holds the group, its global options, ``demo`` and :func:`main`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path

import click

from .. import __version__
from . import output as out
from .archive_commands import get, push, sync
from .cache_commands import config, explain, query, status, verify, versions
from .lifecycle_commands import manifest, prune, remove, retract, unretract
from .register_command import register
from .support import Interrupted, State, command_line_wording, json_flag, one_line
from .ui_command import ui

logger = logging.getLogger(__name__)

__all__ = ["cli", "main"]

_ENVIRONMENT = """\b
Environment variables (a global option wins over its variable):
  KOA_INSTRUMENT_NAME        instrument, e.g. hispec (or --instrument)
  KOA_CALIBRATION_CACHE      cache folder (or --cache-dir)
  KOA_CALIBRATION_CACHE_READONLY
                             read-only caches searched first (folders separated by ':')
  KOA_CALIBRATIONS_URL       the archive (or --url; default: the Keck calibrations API)
  KOA_API_TOKEN              bearer token for the archive (wins over the Keck login)
  KECK_OBSERVER_EMAIL, KECK_OBSERVER_PASSWORD
                             Keck observer login, used when no token is set
  KECK_LOGIN_URL             the Keck login service (default https://www3.keck.hawaii.edu)
  KOA_INSTRUMENT_PROFILE     a TOML instrument profile (version families, header map)
  KOA_CALIBRATION_ORIGIN (or KOA_CALIBRATIONS_ORIGIN)
                             origin of what register stores (default LOCAL)
  KOA_LOCAL_CALIBRATION_DATABASE_FILENAME (or KOA_LOCAL_DATABASE_FILENAME)
                             SQLite file in <cache>/database/ (default <instrument>_calibrations.db)
  KOA_LOCAL_CALIBRATION_DATABASE_TABLE_NAME (or KOA_LOCAL_DATABASE_TABLE_NAME)
                             table of the records (default <instrument>)
  KOA_USE_CACHED_CALIBRATIONS
                             false: get always fetches a fresh copy (default true)
  KOA_PROGRESS               0: no progress bars (they show only on a terminal anyway)
  KOA_ALLOW_RETRACTED        1: get serves a retracted calibration by id, with a warning
  KOA_CACHE_MAX_SIZE         e.g. 50GiB: after downloads, the least recently used files go
  KOA_MAX_ANSWER_BYTES       most bytes read of one archive answer (default 256MiB)
  KOA_LOCK_TIMEOUT           seconds to wait for a calibration another process holds (default: wait)

\b
Exit status: 0 success, 1 failure, 2 misuse, 130 interrupted (Ctrl-C).
koa-cal config shows every setting and where it came from."""


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_ENVIRONMENT,
)
@click.option(
    "--instrument", metavar="NAME", help="Instrument, e.g. hispec (else KOA_INSTRUMENT_NAME)."
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Calibration cache folder (else KOA_CALIBRATION_CACHE).",
)
@click.option(
    "--url",
    metavar="URL",
    help="Archive URL, e.g. http://host:8750/api/calibrations (else KOA_CALIBRATIONS_URL).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=2,
    show_default=True,
    help="Retries of an archive request that failed for a passing reason (0-10).",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log more to stderr: -v adds INFO, -vv DEBUG (default: WARNING and above).",
)
@click.option("--debug", is_flag=True, help="Show DEBUG logs, and the traceback of an error.")
@click.option(
    "--new-instrument",
    is_flag=True,
    help="Allow a command to create a cache for an instrument that has no profile "
    "(else a name without profile or cache is taken for a typo and refused).",
)
@click.version_option(__version__, prog_name="koa-cal")
@click.pass_context
def cli(
    ctx: click.Context,
    instrument: str | None,
    cache_dir: str | None,
    url: str | None,
    as_json: bool,
    retries: int,
    verbose: int,
    debug: bool,
    new_instrument: bool,
) -> None:
    """Manage a local calibration cache and keep it in step with the calibration archive.

    \b
    Examples:
      koa-cal sync --files               pull records and files from the archive
      koa-cal register master_dark.fits  add a calibration you produced
      koa-cal status                     what is here, and how far from the archive
      koa-cal COMMAND --help             a command's options and examples
    """
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EscapingFormatter("koa-cal: %(levelname)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger("koa_middleware").setLevel(level)
    state = ctx.ensure_object(State)
    state.instrument, state.cache_dir, state.url = instrument, cache_dir, url
    state.json = state.json or as_json
    state.retries = retries
    state.new_instrument = state.new_instrument or new_instrument


class _EscapingFormatter(logging.Formatter):
    """Log lines with the control characters of the values they quote escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return out.escape_controls(super().format(record), keep="\n\t")


def _error_line(message: str) -> str:
    """The one ``Error:`` line of a failure: in the command line's words, escaped."""
    return f"Error: {out.escape_controls(command_line_wording(message))}"


@click.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False),
    help="Keep the archive, caches and files in this folder instead of removing them.",
)
@json_flag
@click.pass_obj
def demo(state: State, keep: str | None) -> None:
    """Run the whole job end to end on synthetic HISPEC data.

    Starts a koa-archive on a free local port over a temporary folder,
    publishes synthetic calibrations, syncs a fresh cache, selects darks and
    flats for science frames, downloads and verifies them, and shuts down.
    Prints the URL of the archive's web pages (/ui/), open while it runs.
    Needs no settings and leaves nothing behind (unless --keep, which ends
    with three commands to try on the cache it kept, and the one command
    that serves the kept archive's web pages again).

    \b
    Examples:
      koa-cal demo
      koa-cal demo --keep /tmp/koa_demo
    """
    from .demo import run_demo

    summary = run_demo(keep=Path(keep) if keep else None, echo=None if state.json else click.echo)
    if state.json:
        click.echo(out.render_json(summary))


_GLOBAL_OPTIONS = (
    "Global options go before the command: --instrument, --cache-dir, --url, --json, "
    "--retries, -v/--verbose, --debug, --new-instrument (see koa-cal --help, which also "
    "lists the environment variables)."
)

_COMMANDS = (config, status, sync, query, get, register, push, verify, versions, explain,
             retract, unretract, remove, prune, manifest, ui, demo)  # fmt: skip
for _command in _COMMANDS:
    _command.epilog = _GLOBAL_OPTIONS
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Run ``koa-cal``; the entry point of the console script.

    Parameters
    ----------
    argv : list of str | None
        The arguments; None reads ``sys.argv[1:]``.

    Raises
    ------
    SystemExit
        Always: 0 on success, 1 on failure, 2 on misuse, 130 on Ctrl-C.

    Examples
    --------
    >>> main(["--version"])  # doctest: +SKIP
    koa-cal, version ...
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        code = _run(args)
    except BrokenPipeError:  # stdout closed early (koa-cal query | head): not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        sys.exit(2)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "koa-cal"
        click.echo(
            f"{_error_line(one_line(exc.format_message()))} (see '{where} --help')", err=True
        )
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(_error_line(one_line(exc.format_message())), err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Error: aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        if debug:
            traceback.print_exc()
        summary = exc.summary if isinstance(exc, Interrupted) else "stopped before finishing"
        click.echo(f"Interrupted: {out.escape_controls(summary)}.", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        click.echo(_error_line(one_line(exc)), err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _run(args: list[str]) -> object:
    """Parse ``args`` and run the command; click's own handling of Ctrl-C is left out."""
    try:
        with cli.make_context("koa-cal", args) as ctx:
            return cli.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code


if __name__ == "__main__":
    main()

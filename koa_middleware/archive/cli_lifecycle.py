"""``koa-archive retract`` and ``koa-archive unretract``: a record's life, from the shell.

They change the catalog as the ``retract`` and ``unretract`` routes do (new
``seq`` and ``last_updated`` under the instrument's write lock), so running
servers and their clients see the change at once.

Examples
--------
::

    koa-archive retract --root /srv/koa --instrument hispec --reason "hot pixels" ID...
    koa-archive unretract --root /srv/koa --instrument hispec ID...
"""

from __future__ import annotations

import logging

import click

from ..errors import ConfigurationError, KOAError
from .cli_options import instrument_names, open_catalog, root_option
from .problems import ArchiveProblem, BadRequest, NotFound
from .retractions import check_ids, check_reason

logger = logging.getLogger(__name__)

__all__ = ["retract", "unretract"]


def _change(root, db_url, instrument: str, ids: tuple[str, ...], reason: str | None) -> None:
    (name,) = instrument_names([instrument])
    try:
        wanted = check_ids(list(ids))
        reason = None if reason is None else check_reason(reason)
    except BadRequest as exc:
        raise click.BadParameter(exc.message) from None
    catalog = open_catalog(root.expanduser().absolute(), db_url)
    try:
        try:
            stamp = catalog.set_lifecycle(name, wanted, reason)
        except NotFound as exc:
            raise click.ClickException(exc.message) from None
        except ConfigurationError:
            raise click.ClickException(
                f"The archive has no instrument {name!r}; check --instrument (and --root/--db)."
            ) from None
        except (ArchiveProblem, KOAError) as exc:
            raise click.ClickException(str(exc)) from None
        changed = [catalog.get(name, cal_id) for cal_id in wanted]
    finally:
        catalog.close()
    action = "unretracted" if reason is None else "retracted"
    for record in changed:
        if record is not None:
            click.echo(f"{action}\t{record['id']}\t{record['filename']}\t{stamp}")
    if reason is not None:
        click.echo(f"reason: {reason}")


@click.command()
@root_option
@click.option("--instrument", required=True, metavar="NAME", help="The records' instrument.")
@click.option("--reason", required=True, metavar="TEXT", help="Why (up to 2,000 characters).")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
def retract(root, db_url, instrument, reason, ids) -> None:
    """Retract calibrations: no client selects them any more; records and files stay.

    Each record gains the time and REASON and a new place in the changes feed,
    so clients learn of it on their next sync; default queries (and v1 clients)
    no longer see it. Prints one line per calibration: retracted, ID, FILENAME,
    TIME. Unknown ids change nothing and exit 1.

    \b
    Example:
      koa-archive retract --root /srv/koa --instrument hispec \\
          --reason "hot pixels in the lower half" 1b4e28ba-2fa1-4d2b-883f-0016d3cca427
    """
    _change(root, db_url, instrument, ids, reason)


@click.command()
@root_option
@click.option("--instrument", required=True, metavar="NAME", help="The records' instrument.")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
def unretract(root, db_url, instrument, ids) -> None:
    """Make retracted calibrations live again (clients learn of it on their next sync).

    Prints one line per calibration: unretracted, ID, FILENAME, TIME. Unknown
    ids change nothing and exit 1.
    """
    _change(root, db_url, instrument, ids, None)

"""Options and helpers that the ``koa-archive`` commands share."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ..errors import KOAError
from ..profiles import DEFAULT_INSTRUMENTS
from ..records import validate_column_name

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_INSTRUMENTS",
    "instrument_names",
    "open_catalog",
    "open_storage",
    "root_option",
    "storage_options",
]


def root_option(function):
    """Add ``--root DIR`` and ``--db URL`` to a command."""
    function = click.option(
        "--db",
        "db_url",
        default=None,
        metavar="URL",
        help="Catalog database: sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
        "(default: SQLite at DIR/archive.db).",
    )(function)
    return click.option(
        "--root",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="The archive folder (files, and the default catalog).",
    )(function)


def storage_options(function):
    """Add ``--storage s3://BUCKET/PREFIX`` and ``--s3-endpoint-url URL`` to a command."""
    function = click.option(
        "--s3-endpoint-url",
        default=None,
        metavar="URL",
        help="Endpoint of S3-compatible storage, e.g. http://minio:9000 (default: "
        "AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS).",
    )(function)
    return click.option(
        "--storage",
        "storage_url",
        default=None,
        metavar="s3://BUCKET/PREFIX",
        help="Keep files in object storage (credentials and region from the standard AWS "
        "variables); default: the folder DIR/files.",
    )(function)


def open_storage(root: Path, storage_url: str | None, s3_endpoint_url: str | None):
    """Open the archive's file storage; a bad option is a clear command-line error."""
    from .storage import open_storage

    if s3_endpoint_url and not storage_url:
        raise click.BadParameter(
            "is only used with --storage s3://BUCKET/PREFIX.", param_hint="--s3-endpoint-url"
        )
    try:
        return open_storage(storage_url, root, s3_endpoint_url)
    except KOAError as exc:
        raise click.ClickException(str(exc)) from None


def open_catalog(root: Path, db_url: str | None, instruments=()):
    """Open (creating or upgrading) the archive's catalog; failures end the command."""
    from .catalog import Catalog

    try:
        return Catalog.open(root.expanduser().absolute(), db_url, instruments)
    except KOAError as exc:
        raise click.ClickException(str(exc)) from None


def instrument_names(names) -> tuple[str, ...]:
    """Check and lower-case instrument names, without repeats."""
    result = []
    for name in names:
        try:
            result.append(validate_column_name(name.strip().lower()))
        except KOAError:
            raise click.BadParameter(
                f"{name!r} is not an instrument name (letters, digits, underscores).",
                param_hint="--instrument",
            ) from None
    return tuple(dict.fromkeys(result))

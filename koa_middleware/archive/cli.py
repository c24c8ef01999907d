"""``koa-archive``: run the calibration archive, manage its tokens, ingest files.

Every command that touches the catalog takes ``--root DIR`` and optionally
``--db URL`` (default SQLite at ``DIR/archive.db``).

Examples
--------
::

    koa-archive serve --root /srv/koa --port 8750 --instrument hispec
    koa-archive serve --root /srv/koa --db postgresql://koa@db/koa --storage s3://cals/koa
    koa-archive token create --root /srv/koa --scope write --name pipeline
    koa-archive ingest --root /srv/koa --instrument hispec dark_001.fits
    koa-archive retract --root /srv/koa --instrument hispec --reason "hot pixels" ID
    koa-archive migrate-storage --from /srv/koa --to s3://cals/koa
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import KOAError
from .cli_lifecycle import retract, unretract
from .cli_options import DEFAULT_INSTRUMENTS
from .cli_options import instrument_names as _instrument_names
from .cli_options import open_catalog as _open_catalog
from .cli_options import open_storage as _open_storage
from .cli_options import root_option as _root_option
from .cli_options import storage_options as _storage_options
from .problems import ArchiveProblem

logger = logging.getLogger(__name__)

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(__version__, prog_name="koa-archive")
def main(verbose: int) -> None:
    """The KOA calibration archive service."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _limits_line(settings: Any, limits: Any) -> str:
    """One line saying what the archive refuses, printed when it starts listening."""
    from .bodies import MIN_BODY_RATE
    from .connections import open_file_limit

    uploads = (
        "any size"
        if settings.max_upload_bytes is None
        else f"at most {settings.max_upload_bytes:,} bytes"
    )
    return (
        f"koa-archive limits: add bodies of at most {settings.max_add_bytes:,} bytes and "
        f"{settings.max_add_records:,} records; uploads of {uploads}; a body that brings "
        f"less than {MIN_BODY_RATE:,} bytes a second over {settings.body_timeout:g} s is "
        f"dropped; request headers must arrive within {limits.header_timeout:g} s; at most "
        f"{limits.max_connections:,} connections at once (file limit {open_file_limit():,})."
    )


def _connection_limits(header_timeout: float, max_connections: int | None) -> Any:
    """The connection limits of ``serve``; warn when the cap outgrows the file limit."""
    from .connections import ConnectionLimits, default_max_connections, open_file_limit

    default = default_max_connections()
    if max_connections is None:
        max_connections = default
    elif max_connections > default:
        logger.warning(
            "--max-connections %d leaves little room under the file limit (%d): the archive "
            "may fail to open its files or accept connections; raise the limit (ulimit -n) "
            "or keep --max-connections at most %d",
            max_connections,
            open_file_limit(),
            default,
        )
    return ConnectionLimits(header_timeout=header_timeout, max_connections=max_connections)


@main.command()
@_root_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8750,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port; 0 takes a free one.",
)
@click.option(
    "--instrument",
    "instruments",
    multiple=True,
    metavar="NAME",
    help="An instrument to serve (repeatable); default hispec and liger.",
)
@click.option("--anonymous-read", is_flag=True, help="Allow reading without a token.")
@click.option(
    "--protocol",
    type=click.Choice(["2", "1"]),
    default="2",
    show_default=True,
    help="1 serves only the v1 routes (as the Keck service does).",
)
@click.option(
    "--max-upload-bytes",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Refuse uploads larger than N bytes (413).",
)
@click.option(
    "--max-add-bytes",
    type=click.IntRange(min=1),
    default=64 << 20,
    show_default=True,
    metavar="N",
    help="Refuse add requests whose body is larger than N bytes (413).",
)
@click.option(
    "--max-add-records",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    metavar="N",
    help="Refuse add requests holding more than N records (413).",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Drop a request (408), and its partial upload, when its body brings less than "
    "1 KiB a second over this long: a body that stops, or drips a byte at a time.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Close a connection whose request headers are not complete this long after it "
    "opened (or after its previous answer).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Connections served at once; one more replaces the longest-idle one, or is "
    "answered 503 when all are busy. Default: about 70% of the file limit (ulimit -n).",
)
@click.option(
    "--query-batch",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    metavar="ROWS",
    help="Rows of a query answer read from the catalog and sent at a time.",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
@_storage_options
@click.option(
    "--redirect-downloads",
    is_flag=True,
    help="Answer raw-file downloads with a 307 to a short-lived URL of the object "
    "(needs --storage s3://...); clients then read the bytes from the store.",
)
@click.option(
    "--redirect-seconds",
    type=click.IntRange(min=1, max=7 * 24 * 3600),
    default=300,
    show_default=True,
    metavar="SECONDS",
    help="How long a redirect URL stays valid.",
)
@click.option(
    "--abandoned-upload-age",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="At start, remove partial uploads (left by a crash) that received nothing for "
    "this long. Keep it above the longest pause of an upload still running elsewhere.",
)
def serve(
    root,
    db_url,
    host,
    port,
    instruments,
    anonymous_read,
    protocol,
    max_upload_bytes,
    max_add_bytes,
    max_add_records,
    body_timeout,
    header_timeout,
    max_connections,
    query_batch,
    access_log,
    storage_url,
    s3_endpoint_url,
    redirect_downloads,
    redirect_seconds,
    abandoned_upload_age,
) -> None:
    """Serve the calibrations API under http://HOST:PORT/api/calibrations.

    \b
    Examples:
      koa-archive serve --root /srv/koa --instrument hispec
      koa-archive serve --root /srv/koa --db postgresql://koa@db/koa \\
          --storage s3://calibrations/koa --redirect-downloads --host 0.0.0.0
    """
    import uvicorn

    from .app import API_PREFIX, ArchiveSettings, create_app
    from .connections import ConnectionGuard

    root = root.expanduser().absolute()
    names = _instrument_names(instruments) or DEFAULT_INSTRUMENTS
    settings = ArchiveSettings(
        root=root,
        db_url=db_url,
        instruments=names,
        anonymous_read=anonymous_read,
        protocol=int(protocol),
        max_upload_bytes=max_upload_bytes,
        max_add_bytes=max_add_bytes,
        max_add_records=max_add_records,
        body_timeout=body_timeout,
        query_batch=query_batch,
        redirect_downloads=redirect_downloads,
        redirect_seconds=redirect_seconds,
    )
    if redirect_downloads and not storage_url:
        raise click.BadParameter(
            "needs --storage s3://BUCKET/PREFIX: a folder cannot hand out download URLs.",
            param_hint="--redirect-downloads",
        )
    storage = _open_storage(root, storage_url, s3_endpoint_url)
    catalog = _open_catalog(root, db_url, names)
    storage.clean_incoming(abandoned_upload_age)
    app = create_app(settings, catalog=catalog, storage=storage)
    limits = _connection_limits(header_timeout, max_connections)
    guard = ConnectionGuard(limits)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it
    # every keep-alive response waits for the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {exc}") from None
    sock.listen(1024)
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if family == socket.AF_INET6 else host
    base_url = f"http://{shown_host}:{bound_port}{API_PREFIX}"
    config = uvicorn.Config(
        guard.wrap(app),
        http=guard.protocol_class(),
        log_level=logging.getLevelName(logging.getLogger().level).lower(),
        access_log=access_log,
        timeout_graceful_shutdown=10,
        log_config=None,
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        # Out of descriptors, asyncio logs every failed accept (thousands a second).
        asyncio.get_running_loop().set_exception_handler(guard.exception_handler)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            click.echo(f"koa-archive listening on {base_url}")
            click.echo(_limits_line(settings, limits))
            sys.stdout.flush()
        await task

    def _stopped(signum, _frame) -> None:
        raise SystemExit(0)

    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again
    # for the previous handler: make that a clean exit rather than a kill or a traceback.
    signal.signal(signal.SIGTERM, _stopped)
    signal.signal(signal.SIGINT, _stopped)
    try:
        asyncio.run(run())
    finally:
        catalog.close()
        logger.info("koa-archive on %s stopped", base_url)
    if not server.started:
        raise click.ClickException("The server did not start; see the log above.")


@main.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command("create")
@_root_option
@click.option("--scope", required=True, type=click.Choice(["read", "write", "admin"]))
@click.option("--name", default=None, help="A unique name (default: SCOPE-RANDOM).")
def token_create(root, db_url, scope, name) -> None:
    """Create a token and print it (alone, once; only its hash is kept)."""
    from .tokens import TokenStore

    catalog = _open_catalog(root, db_url)
    try:
        secret = TokenStore(catalog.engine).create(name, scope)
    except KOAError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        catalog.close()
    click.echo(secret)


@token.command("list")
@_root_option
def token_list(root, db_url) -> None:
    """List tokens: name, scope, created (never the secret)."""
    from .tokens import TokenStore

    catalog = _open_catalog(root, db_url)
    try:
        for info in TokenStore(catalog.engine).list():
            click.echo(f"{info.name}\t{info.scope}\t{info.created}")
    finally:
        catalog.close()


@token.command("revoke")
@_root_option
@click.argument("name")
def token_revoke(root, db_url, name) -> None:
    """Revoke the token NAME; every server sharing the catalog refuses it at once."""
    from .tokens import TokenStore

    catalog = _open_catalog(root, db_url)
    try:
        if not TokenStore(catalog.engine).revoke(name):
            raise click.ClickException(f"No token named {name!r}; see 'koa-archive token list'.")
    finally:
        catalog.close()
    click.echo(f"revoked {name}")


@main.command()
@_root_option
@click.option("--instrument", required=True, metavar="NAME", help="Publish under this instrument.")
@click.option("--origin", default="KECK", show_default=True, help="Origin of records naming none.")
@click.option(
    "--family-column",
    "family_columns",
    multiple=True,
    metavar="NAME",
    help="A column that, beside cal_type and origin, defines a version family (repeatable).",
)
@_storage_options
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def ingest(
    root, db_url, instrument, origin, family_columns, storage_url, s3_endpoint_url, files
) -> None:
    """Publish calibration FILES (FITS header and/or FILE.json sidecar as the record).

    Prints one line per published file: ID, FILENAME, CAL_VERSION. Each file is
    published on its own; the exit status is 1 if any failed.
    """
    from .ingest import ingest_file

    (name,) = _instrument_names([instrument])
    for column in family_columns:
        _instrument_names([column])
    root = root.expanduser().absolute()
    storage = _open_storage(root, storage_url, s3_endpoint_url)
    catalog = _open_catalog(root, db_url, [name])
    failures = 0
    try:
        for path in files:
            try:
                result = ingest_file(catalog, storage, name, path, origin.upper(), family_columns)
            except (KOAError, ArchiveProblem, OSError) as exc:
                failures += 1
                click.echo(f"error: {path}: {exc}", err=True)
                continue
            click.echo(f"{result.id}\t{result.filename}\t{result.cal_version}")
    finally:
        catalog.close()
    if failures:
        raise click.ClickException(f"{failures} of {len(files)} file(s) were not ingested.")


@main.command("migrate-storage")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The archive folder whose files (DIR/files) are copied.",
)
@click.option(
    "--db",
    "db_url",
    default=None,
    metavar="URL",
    help="The archive's catalog (default: SQLite at DIR/archive.db).",
)
@click.option(
    "--to",
    "target_url",
    required=True,
    metavar="s3://BUCKET/PREFIX",
    help="Where the files go.",
)
@click.option("--s3-endpoint-url", default=None, metavar="URL", help="The store's endpoint.")
def migrate_storage(source, db_url, target_url, s3_endpoint_url) -> None:
    """Copy an archive's files to object storage, checking each against the catalog.

    Every file the catalog lists is read from DIR/files, its MD5 and size are
    checked against the catalog while it is sent, and only then is the object
    completed. Objects already there with the right MD5 and size are left as
    they are, so the command can be run again after an interruption. Prints one
    line per file (copied, present or failed) and a summary; exit status 1 if
    any file failed.

    \b
    Examples:
      koa-archive migrate-storage --from /srv/koa --to s3://calibrations/koa
      koa-archive migrate-storage --from /srv/koa --db postgresql://koa@db/koa \\
          --to s3://calibrations/koa --s3-endpoint-url http://minio:9000
    """
    from .migrate import migrate_files
    from .storage import LocalFileStorage

    root = source.expanduser().absolute()
    if not target_url.startswith("s3://"):
        raise click.BadParameter("write s3://BUCKET/PREFIX.", param_hint="--to")
    target = _open_storage(root, target_url, s3_endpoint_url)
    catalog = _open_catalog(root, db_url)
    try:
        report = migrate_files(
            catalog,
            LocalFileStorage(root),
            target,
            on_file=lambda outcome: click.echo(outcome.line(), err=outcome.error is not None),
        )
    finally:
        catalog.close()
    click.echo(report.summary())
    if report.failed:
        raise click.ClickException(
            f"{report.failed} file(s) were not copied (see the lines above); fix them and run "
            "the command again: files already copied are not sent twice."
        )


main.add_command(retract)
main.add_command(unretract)

"""``koa-cal ui``: the calibrations' web pages over the local cache, on 127.0.0.1.

The same pages the archive serves under ``/ui`` (:mod:`koa_middleware.web`), read from
this cache's database, which holds the records and retractions of its read-only
caches too. The server listens on the loopback address only, on a free port unless
``--port`` names one, and prints its URL before it starts answering.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import click

from .support import (
    State,
    archive_display_url,
    emit,
    json_flag,
    load_selector_class,
    open_store,
)

logger = logging.getLogger(__name__)

__all__ = ["ui"]

HOST = "127.0.0.1"


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port on 127.0.0.1 to serve on (0: a free one).",
)
@click.option(
    "--selector",
    "specs",
    multiple=True,
    metavar="MODULE:CLASS",
    help="A selector the explain page offers besides the built-in ones (a module in the "
    "current folder is found); repeat for more.",
)
@click.option(
    "--manifests",
    type=click.Path(exists=True, file_okay=False),
    help="A folder of run manifests (*.json) the manifest check page lists to pick from.",
)
@json_flag
@click.pass_obj
def ui(state: State, port: int, specs: tuple[str, ...], manifests: str | None) -> None:
    """Serve the calibration pages of the local cache on 127.0.0.1, until Ctrl-C.

    Overview, browse, record and history pages of the cache (and its read-only
    caches), as koa-archive serves them under /ui/; the manifest check page, and
    the explain page with the built-in selectors and those of --selector.
    Prints the URL to open. Needs the server extra (pip install
    'koa_middleware[server]').

    \b
    Examples:
      koa-cal ui
      koa-cal --instrument hispec ui --port 8760
      koa-cal ui --selector myselectors:DarkSelector --manifests runs/
    """
    try:
        import uvicorn

        from ..web import create_local_site
        from ..web.cache_reader import CacheReader
        from ..web.local_tools import LocalTools, builtin_selectors
    except ImportError as exc:
        raise click.ClickException(
            f"koa-cal ui needs the server extra ({exc.name} is missing): "
            "pip install 'koa_middleware[server]'."
        ) from None
    selectors = {**builtin_selectors(), **{spec: load_selector_class(spec) for spec in specs}}
    with open_store(state, create=False) as store:
        store.cache.refresh()  # what the read-only caches added since the cache last looked
        reader = CacheReader({store.instrument_name: store.cache})
        tools = LocalTools(
            selectors,
            Path(manifests).absolute() if manifests else None,
            archive_display_url(store),
            str(store.config.cache_dir),
        )
        listener = _listen(port)
        url = f"http://{HOST}:{listener.getsockname()[1]}/ui/"
        emit(state, {"url": url}, f"Calibration pages of {store.instrument_name}: {url}\n"
             "Press Ctrl-C to stop.")  # fmt: skip
        site = create_local_site(reader, tools)
        config = uvicorn.Config(site, log_level="warning", access_log=False)
        uvicorn.Server(config).run(sockets=[listener])


def _listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: a free port).

    Raises
    ------
    click.ClickException
        If the port is taken or may not be used.
    """
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections, as
    # koa-archive does: without it each keep-alive answer waits ~40 ms for a delayed ACK.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        listener.bind((HOST, port))
    except OSError as exc:
        listener.close()
        raise click.ClickException(
            f"Cannot listen on {HOST}:{port} ({exc.strerror}); choose another --port, "
            "or leave it out for a free one."
        ) from None
    listener.listen(128)
    listener.set_inheritable(True)
    return listener

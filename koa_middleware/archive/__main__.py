"""``python -m koa_middleware.archive``: the same as the ``koa-archive`` command."""

import logging

from .cli import main

logger = logging.getLogger(__name__)

if __name__ == "__main__":
    main(prog_name="koa-archive")

"""``python -m koa_middleware.cli``: the same as the ``koa-cal`` command."""

import logging

from .commands import main

logger = logging.getLogger(__name__)

if __name__ == "__main__":
    main()

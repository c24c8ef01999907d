"""``koa-cal``, the command line of the calibration store.

:mod:`.commands` holds the commands, :mod:`.support` opening the store and
parsing options, :mod:`.output` rendering, and :mod:`.demo` the end-to-end
demonstration behind ``koa-cal demo``.
"""

import logging

from .commands import main

logger = logging.getLogger(__name__)

__all__ = ["main"]

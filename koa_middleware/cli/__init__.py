"""``koa-cal``, the command line of the calibration store.

:mod:`.commands` holds the group and its global options; the commands live in
:mod:`.cache_commands` (config, status, query, verify, versions, explain),
:mod:`.archive_commands` (sync, get, push), :mod:`.register_command` and
:mod:`.lifecycle_commands` (retract, unretract, remove, prune, manifest);
:mod:`.support` opens the store and parses options, :mod:`.output` renders, and
:mod:`.demo` is the end-to-end demonstration behind ``koa-cal demo``.
"""

import logging

from .commands import main

logger = logging.getLogger(__name__)

__all__ = ["main"]

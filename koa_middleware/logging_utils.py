"""The package's logger, for pipelines that want a handle on it.

The reference implementation ships a ``logging_utils`` module, so pipelines
that import it keep working. Every module of the package logs under the
``koa_middleware`` logger; this module configures nothing (handlers and levels
are the application's choice, see the quickstart).

Examples
--------
>>> from koa_middleware.logging_utils import logger
>>> logger.name
'koa_middleware'
"""

from __future__ import annotations

import logging

__all__ = ["logger"]

#: The parent of every logger of the package.
logger = logging.getLogger("koa_middleware")

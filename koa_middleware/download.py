"""Downloading files from the Keck Observatory Archive (KOA).

The module lives at :mod:`koa_middleware.client.download`; this path is kept for pipelines that
import it, and is that very module.
"""

import sys

from .client import download as _module

sys.modules[__name__] = _module

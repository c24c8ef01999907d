"""The HTTP client of the calibration archive.

It lives at :mod:`koa_middleware.client.remote_database`; this path is kept for pipelines that
import it, and is that very module.
"""

import sys

from ..client import remote_database as _module

sys.modules[__name__] = _module

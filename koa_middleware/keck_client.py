"""The Keck observer login as a client object.

The module lives at :mod:`koa_middleware.client.keck_client`; this path is kept for pipelines that
import it, and is that very module.
"""

import sys

from .client import keck_client as _module

sys.modules[__name__] = _module

"""Web pages of the calibrations: server-rendered HTML over the archive or a local cache.

The pages read through :class:`~.reader.CalibrationReader`, implemented by the
archive's catalog (:class:`~.catalog_reader.CatalogReader`) and by local caches
(:class:`~.cache_reader.CacheReader`). ``koa-archive serve`` mounts them under
``/ui``; ``koa-cal ui`` serves them over the local cache. Only the record rules and
the archive's catalog are imported here, never the archive client.
"""

from __future__ import annotations

from .app import CSP, create_local_site, create_ui
from .reader import BadQuery, BrowseQuery, CalibrationReader
from .sessions import TokenGate

__all__ = [
    "CSP",
    "BadQuery",
    "BrowseQuery",
    "CalibrationReader",
    "TokenGate",
    "create_local_site",
    "create_ui",
]
